# Socket families that are kernel-exploit paths (AF_PACKET, AF_NETLINK, AF_ALG, AF_VSOCK, AF_KEY,
# AF_RXRPC, ...) and the network itself (AF_INET, AF_INET6) must fail with EPERM; AF_UNIX works.
# expect: status=ok
# stdout-contains: allowed AF_UNIX
# stdout-contains: DONE
import errno
import socket

FAMILIES = {"AF_INET": 2, "AF_INET6": 10, "AF_PACKET": 17, "AF_NETLINK": 16, "AF_ALG": 38, "AF_VSOCK": 40,
            "AF_KEY": 15, "AF_RXRPC": 33, "AF_BLUETOOTH": 31, "AF_CAN": 29, "AF_TIPC": 30, "AF_XDP": 44,
            "AF_APPLETALK": 5, "AF_X25": 9, "AF_NETROM": 6, "AF_ATMPVC": 8, "AF_LLC": 26, "AF_SMC": 43,
            "AF_MCTP": 45, "AF_RDS": 21, "AF_NFC": 39, "AF_QIPCRTR": 42, "AF_unknown_200": 200}
TYPES = {"STREAM": socket.SOCK_STREAM, "DGRAM": socket.SOCK_DGRAM, "RAW": socket.SOCK_RAW,
         "SEQPACKET": socket.SOCK_SEQPACKET}
for name, family in FAMILIES.items():
    for tname, kind in TYPES.items():
        for proto in (0, 9) if family == 16 else (0,):  # NETLINK_ROUTE and NETLINK_AUDIT-ish
            try:
                s = socket.socket(family, kind, proto)
                s.close()
                print(f"LEAK: socket({name}, {tname}, {proto}) created")
            except OSError as exc:
                if exc.errno != errno.EPERM:
                    print(f"LEAK: socket({name}, {tname}, {proto}) reached the kernel: {exc}")
    print(f"DENIED {name}")
    try:
        socket.socketpair(family, socket.SOCK_STREAM)
        print(f"LEAK: socketpair({name}) created")
    except OSError as exc:
        if exc.errno != errno.EPERM:
            print(f"LEAK: socketpair({name}) reached the kernel: {exc}")
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.close()
b.close()
print("allowed AF_UNIX")
print("DONE")
