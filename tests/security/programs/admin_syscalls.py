# Host administration calls, each with arguments that would be harmless even if it got through
# (bad magic, invalid length, bad descriptor, nonexistent names): the filter must answer EPERM.
# expect: status=ok
# stdout-contains: DONE
import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


must_fail("syslog(SIZE_BUFFER)", 103, 10, None, 0)
must_fail("sethostname(65 bytes)", 170, b"x" * 65, 65)
must_fail("setdomainname(65 bytes)", 171, b"x" * 65, 65)
must_fail("reboot(bad magic)", 169, 0, 0, 0, None)
must_fail("swapon(NULL)", 167, None, 0)
must_fail("swapoff(NULL)", 168, None)
must_fail("init_module(NULL)", 175, None, 0, b"")
must_fail("finit_module(-1)", 313, -1, b"", 0)
must_fail("delete_module(missing)", 176, b"stockade_no_such_module", 0o4000)
must_fail("kexec_load(bad flags)", 246, 0, 0, None, 0xDEAD0000)
must_fail("kexec_file_load(-1)", 320, -1, -1, 0, b"", 0xDEAD0000)
must_fail("iopl(0)", 172, 0)
must_fail("ioperm(off)", 173, 0x80, 1, 0)
must_fail("open_by_handle_at(-1)", 304, -1, ctypes.create_string_buffer(128), 0)
must_fail("name_to_handle_at", 303, -100, b"/etc", ctypes.create_string_buffer(128), ctypes.create_string_buffer(8), 0)
must_fail("set_mempolicy(DEFAULT)", 238, 0, None, 0)
must_fail("vhangup", 153)
must_fail("fanotify_init", 300, 0, 0)
must_fail("lookup_dcookie", 212, 0, None, 0)
print("DONE")
