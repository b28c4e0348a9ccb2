# sync and syncfs write back the host's dirty data (every filesystem, or the one
# of a descriptor: the host's root through the read-only /usr), and a process in
# one ignores SIGKILL until it returns: the filter must answer EPERM. syncfs is
# tried on a bad descriptor (harmless if it got through); sync itself only flushes.
# expect: status=ok
# stdout-contains: DENIED sync
# stdout-contains: DENIED syncfs
# stdout-contains: DONE
import os

from probe import must_fail  # noqa: E402 (shipped into /box by the driver)

must_fail("sync", 162)
must_fail("syncfs(-1)", 306, -1)
fd = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
must_fail("syncfs(/usr)", 306, fd)
os.close(fd)
with open("/box/own-file", "w") as own:  # one's own file's fsync stays allowed
    own.write("x")
    own.flush()
    os.fsync(own.fileno())
os.unlink("/box/own-file")
print("DONE")
