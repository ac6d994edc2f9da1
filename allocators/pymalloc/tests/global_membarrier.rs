//! `PyMalloc` relies on `membarrier` only when the kernel lists it in its answer to
//! `MEMBARRIER_CMD_QUERY`.
//!
//! A seccomp filter may answer 0 ("success") to system calls it does not know. Before the fix
//! the registration was trusted on its return code alone: under such a filter every barrier of
//! the reader's handshake was a silent no-op while the owners, trusting it, executed no fence
//! of their own. The child here installs a filter that answers 0 to every `membarrier` call,
//! then makes the process's first `PyMalloc` call, which must choose the fence. Deterministic.
//!
//! No `PyMalloc` is the global allocator here: the child's first call must come after the
//! filter is installed.

use pymalloc::PyMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

static PY: PyMalloc = PyMalloc::new();

/// Installs a seccomp filter under which `membarrier` does nothing and returns 0.
fn fake_membarrier() {
    let insn =
        |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    // The filter reads `seccomp_data.nr` (offset 0) and fakes success for membarrier; every
    // other system call is allowed.
    let mut prog = [
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, libc::SYS_membarrier as u32),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ERRNO),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: prctl with integer arguments, then with a pointer to a filter program that
    // lives across the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn a_faked_membarrier_is_not_trusted() {
    if std::env::var_os("PYMALLOC_MEMBARRIER_CHILD").is_some() {
        fake_membarrier();
        // SAFETY: membarrier takes no pointers.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, 1 << 4, 0, 0) };
        assert_eq!(rc, 0, "the filter fakes success");
        let l = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: a non-zero size; freed once with the same layout.
        unsafe { PY.dealloc(PY.alloc(l), l) };
        assert!(!PyMalloc::uses_membarrier(), "a faked membarrier must not be relied on");
        assert_eq!(PY.stats().classes[1].blocks_in_use, 0, "the handshake works with the fence");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_faked_membarrier_is_not_trusted", "--nocapture", "--test-threads=1"])
        .env("PYMALLOC_MEMBARRIER_CHILD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "signal {:?}, stderr: {}",
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr)
    );
}
