# Kernel keyrings are not namespaced: keyctl, add_key and request_key must fail with EPERM.
# expect: status=ok
# stdout-contains: DONE
import ctypes
import errno

from probe import libc, must_fail  # noqa: E402 (shipped into /box by the driver)


must_fail("keyctl(GET_KEYRING_ID session)", 250, 0, -3, 0)
must_fail("keyctl(JOIN_SESSION_KEYRING)", 250, 1, None)
must_fail("add_key user", 248, b"user", b"stockade-probe", b"x", 1, -2)
must_fail("request_key", 249, b"user", b"stockade-probe-missing", None, 0)
print("DONE")
