//! Error numbers a hypercall returns, negated, in RAX.
//!
//! Values from xen/include/public/errno.h (they originate from x86 Linux). `EINTR` and
//! `ERESTART` are Xen-internal there and never reach a guest, so they are absent here.

use core::fmt;

/// A Xen error number (positive). Hypercalls return `-(errno as i64)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub u16);

macro_rules! errnos {
    ($($name:ident = $value:literal, $text:literal;)*) => {
        impl Errno {
            $(pub const $name: Errno = Errno($value);)*

            /// The symbolic name, e.g. `"EFAULT"`, or `None` for an unknown number.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// A short description, for logs.
            pub const fn description(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "unknown error",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "operation not permitted";
    ENOENT = 2, "no such entry";
    ESRCH = 3, "no such domain or object";
    EIO = 5, "I/O error";
    ENXIO = 6, "no such device or address";
    E2BIG = 7, "argument list too long";
    ENOEXEC = 8, "exec format error";
    EBADF = 9, "bad handle";
    ECHILD = 10, "no child";
    EAGAIN = 11, "try again";
    ENOMEM = 12, "out of memory";
    EACCES = 13, "permission denied";
    EFAULT = 14, "bad address";
    EBUSY = 16, "busy";
    EEXIST = 17, "already exists";
    EXDEV = 18, "cross-device link";
    ENODEV = 19, "no such device";
    EINVAL = 22, "invalid argument";
    ENFILE = 23, "table overflow";
    EMFILE = 24, "too many open handles";
    ENOSPC = 28, "no space left";
    EMLINK = 31, "too many links";
    EDOM = 33, "argument out of domain";
    ERANGE = 34, "result out of range";
    EDEADLK = 35, "deadlock would occur";
    ENAMETOOLONG = 36, "name too long";
    ENOLCK = 37, "no locks available";
    ENOSYS = 38, "function not implemented";
    EBADRQC = 56, "invalid request code";
    EBADSLT = 57, "invalid slot";
    ENODATA = 61, "no data available";
    ETIME = 62, "timer expired";
    EBADMSG = 74, "not a data message";
    EOVERFLOW = 75, "value too large";
    EILSEQ = 84, "illegal byte sequence";
    EUSERS = 87, "too many users";
    ENOTSOCK = 88, "not a socket";
    EOPNOTSUPP = 95, "operation not supported";
    EADDRINUSE = 98, "address already in use";
    EADDRNOTAVAIL = 99, "address not available";
    ENOBUFS = 105, "no buffer space";
    EISCONN = 106, "already connected";
    ENOTCONN = 107, "not connected";
    ESHUTDOWN = 108, "endpoint shut down";
    ETOOMANYREFS = 109, "too many references";
    ETIMEDOUT = 110, "timed out";
}

/// The value a hypercall puts in RAX for a handler's result.
#[inline(always)]
pub const fn return_value(result: Result<i64, Errno>) -> i64 {
    match result {
        Ok(value) => value,
        Err(errno) => errno.to_return_value(),
    }
}

impl Errno {
    /// The value a hypercall puts in RAX for this error.
    pub const fn to_return_value(self) -> i64 {
        -(self.0 as i64)
    }

    /// Splits a raw hypercall return value into success or error: Xen returns
    /// errors as values in `-4095..=-1`, like Linux system calls.
    pub const fn check(ret: i64) -> Result<i64, Errno> {
        if ret < 0 && ret >= -4095 {
            Err(Errno((-ret) as u16))
        } else {
            Ok(ret)
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{} ({:?}: {})", self.0, self, self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_value_round_trips() {
        assert_eq!(Errno::EFAULT.to_return_value(), -14);
        assert_eq!(Errno::check(-14), Err(Errno::EFAULT));
        assert_eq!(Errno::check(-38), Err(Errno::ENOSYS));
        assert_eq!(Errno::check(0), Ok(0));
        assert_eq!(Errno::check(0x4_0011), Ok(0x4_0011));
        // Large negative values are not errors (e.g. a returned kernel address).
        assert_eq!(Errno::check(-4096), Ok(-4096));
    }

    #[test]
    fn names_match_xen() {
        assert_eq!(Errno::ENOSYS.name(), Some("ENOSYS"));
        assert_eq!(Errno(4).name(), None, "EINTR is internal to Xen");
    }
}
