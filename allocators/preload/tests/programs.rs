//! Real programs under `LD_PRELOAD=libarenalab_preload.so`: small C programs for each edge case
//! of the malloc API (compiled with `cc` at test time), fork while threads allocate, `git`, a
//! threaded `python3` workload and a few CPython regression test modules, each compared with
//! the same run without the library. A test whose tool is missing prints why and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The built library, next to this test binary's target dir (`target/release/deps/..`),
/// brought up to date first with `cargo build -p preload` in the same profile (`cargo test`
/// builds the integration tests but not the `cdylib` itself).
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..");
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("release");
        let profile = if profile == "debug" { "dev" } else { profile };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--profile", profile, "-p", "preload"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p preload failed");
        let lib = dir.join("libarenalab_preload.so");
        assert!(lib.exists(), "{} not built", lib.display());
        lib
    })
}

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipped: `{name}` is not installed");
    }
    found
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("arenalab-preload-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compiles `src` with `cc` (None, with the reason printed, when there is no `cc`).
fn compile(name: &str, src: &str) -> Option<PathBuf> {
    if !tool("cc") {
        return None;
    }
    let dir = tempdir(name);
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    let out =
        Command::new("cc").args(["-O1", "-pthread", "-o"]).arg(&exe).arg(&c).output().unwrap();
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    Some(exe)
}

fn preloaded(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", library()).env("PYTHONMALLOC", "malloc")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the program under the library and asserts it exits 0 printing `ok`.
fn run_ok(exe: &Path, env: &[(&str, &str)]) -> Output {
    let out =
        preloaded(&mut Command::new(exe)).arg("end").envs(env.iter().copied()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    out
}

const EDGE_CASES: &str = r#"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define CHECK(c) do { if (!(c)) { printf("FAILED line %d: %s\n", __LINE__, #c); return 1; } } while (0)
int main(void) {
    free(NULL);
    /* small and large blocks, usable sizes: a 100-byte request gets a 112-byte pool block */
    char *s = malloc(100), *l = malloc(100000);
    CHECK(s && l);
    CHECK(malloc_usable_size(s) == 112);
    CHECK(malloc_usable_size(l) >= 100000);
    CHECK(malloc_usable_size(NULL) == 0);
    memset(s, 'a', 100); memset(l, 'b', 100000);
    /* realloc: small to small keeps the data, small to large moves to libc, large shrinks */
    s = realloc(s, 300); CHECK(s && s[99] == 'a' && malloc_usable_size(s) == 304);
    s = realloc(s, 5000); CHECK(s && s[0] == 'a' && s[99] == 'a' && malloc_usable_size(s) >= 5000);
    l = realloc(l, 50); CHECK(l && l[49] == 'b');
    /* realloc(NULL, n) is malloc; realloc(p, 0) frees and returns NULL */
    char *r = realloc(NULL, 24); CHECK(r && malloc_usable_size(r) == 32);
    CHECK(realloc(r, 0) == NULL);
    free(s); free(l);
    /* calloc: zeroed (also a recycled pool block), overflow is NULL with ENOMEM */
    for (int i = 0; i < 3; i++) {
        unsigned char *d = malloc(64); memset(d, 0xff, 64); free(d);
        unsigned char *z = calloc(8, 8); CHECK(z);
        for (int j = 0; j < 64; j++) CHECK(z[j] == 0);
        free(z);
    }
    errno = 0; CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0; CHECK(reallocarray(NULL, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    int *a = reallocarray(NULL, 10, sizeof(int)); CHECK(a); a[9] = 7;
    a = reallocarray(a, 20, sizeof(int)); CHECK(a && a[9] == 7); free(a);
    /* alignment: powers of two only */
    void *p = NULL;
    CHECK(posix_memalign(&p, 24, 16) == EINVAL);
    CHECK(posix_memalign(&p, 4, 16) == EINVAL); /* not a multiple of sizeof(void *) */
    CHECK(posix_memalign(&p, 16, 16) == 0 && ((uintptr_t)p & 15) == 0); free(p);
    CHECK(posix_memalign(&p, 4096, 100) == 0 && ((uintptr_t)p & 4095) == 0); free(p);
    errno = 0; CHECK(aligned_alloc(48, 96) == NULL && errno == EINVAL);
    errno = 0; CHECK(memalign(3, 16) == NULL && errno == EINVAL);
    p = aligned_alloc(64, 128); CHECK(p && ((uintptr_t)p & 63) == 0); free(p);
    p = memalign(8, 40); CHECK(p && ((uintptr_t)p & 7) == 0 && malloc_usable_size(p) == 48); free(p);
    p = valloc(10); CHECK(p && ((uintptr_t)p & 4095) == 0); free(p);
    p = pvalloc(10); CHECK(p && ((uintptr_t)p & 4095) == 0 && malloc_usable_size(p) >= 4096); free(p);
    p = malloc(0); free(p);
    printf("ok\n");
    return 0;
}
"#;

#[test]
fn each_edge_case_of_the_malloc_api() {
    let Some(exe) = compile("edge", EDGE_CASES) else { return };
    let out = run_ok(&exe, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

/// The model serves small blocks: with the report on, its class counts show the program's
/// 1000 live 48-byte blocks at exit (on top of whatever libc allocated for itself).
const HOLDS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    for (int i = 0; i < 1000; i++) if (!malloc(40)) return 1;
    printf("ok\n");
    return 0;
}
"#;

#[test]
fn small_blocks_come_from_the_model_and_the_report_says_so() {
    let Some(exe) = compile("holds", HOLDS) else { return };
    let out = run_ok(&exe, &[("ARENALAB_STATS", "1")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Small block threshold = 512, in 32 size classes."), "{err}");
    // Class 2 (48 bytes): 1000 blocks from the program, perhaps a few from libc.
    let row = err.lines().find(|l| l.split_whitespace().next() == Some("2")).expect(&err);
    let in_use: usize = row.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!((1000..1010).contains(&in_use), "{row}");
    // The 3.8 layout: 4 KiB pools of 16-byte classes, 256 KiB arenas.
    let out = run_ok(&exe, &[("ARENALAB_STATS", "1"), ("ARENALAB_PRESET", "3.8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("arenas * 262144 bytes/arena"), "{err}");
}

#[test]
fn a_bad_preset_is_refused_with_exit_code_2() {
    let out =
        preloaded(&mut Command::new("/bin/true")).env("ARENALAB_PRESET", "3.9").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ARENALAB_PRESET=3.9 is not a layout"));
}

/// Three threads allocate and free without pause (both sides of the threshold) while the main
/// thread forks 200 times; each child allocates across the threshold, grows a block by realloc
/// from 4 bytes to 8 KiB, and exits. A child still running after 0.5 s is killed and counted
/// as hung: without the fork handlers it inherits the model's lock held by a thread it lacks
/// (with them disabled, 22 of 40 children hung on the development machine).
const FORK: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void *churn(void *arg) {
    void *keep[64] = {0};
    unsigned i = (unsigned)(long)arg;
    while (!stop) {
        unsigned k = i % 64;
        free(keep[k]);
        keep[k] = malloc(1 + (i * 37) % 1000);
        i++;
    }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}
int main(void) {
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, (void *)i);
    int hung = 0, failed = 0;
    for (int n = 0; n < 200; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            static const size_t sizes[] = {1, 8, 24, 100, 511, 512, 513, 1000, 4096, 70000};
            for (int j = 0; j < 10; j++) {
                char *p = malloc(sizes[j]);
                memset(p, 1, sizes[j]);
                free(p);
            }
            int *g = NULL;
            for (int j = 1; j <= 2000; j++) {
                g = realloc(g, j * sizeof *g);
                g[j - 1] = j;
            }
            for (int j = 0; j < 2000; j++) if (g[j] != j + 1) _exit(1);
            free(g);
            _exit(7);
        }
        int status = 0, waited = 0;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            usleep(1000);
            if (++waited > 500) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                hung++;
                break;
            }
        }
        if (!hung && (!WIFEXITED(status) || WEXITSTATUS(status) != 7)) failed++;
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    if (hung || failed) printf("hung %d, failed %d of 200\n", hung, failed);
    else printf("ok\n");
    return 0;
}
"#;

#[test]
fn fork_while_threads_allocate() {
    let Some(exe) = compile("fork", FORK) else { return };
    let out = run_ok(&exe, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn git_init_add_commit_log() {
    if !tool("git") {
        return;
    }
    let repo = tempdir("git");
    for (i, name) in ["a.txt", "b.txt", "c.txt"].iter().enumerate() {
        std::fs::write(repo.join(name), format!("file {i}\n").repeat(100 * (i + 1))).unwrap();
    }
    let git = |args: &[&str], preload: bool| {
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(&repo).env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", &repo);
        if preload {
            preloaded(&mut cmd);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", show(&out));
        out
    };
    git(&["init", "-q"], true);
    git(&["add", "."], true);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"], true);
    std::fs::write(repo.join("a.txt"), "changed\n").unwrap();
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second"], true);
    let with = git(&["log", "--stat", "--format=%s"], true);
    let without = git(&["log", "--stat", "--format=%s"], false);
    assert_eq!(with.stdout, without.stdout);
    assert!(String::from_utf8_lossy(&with.stdout).contains("second"));
}

/// The real interpreter behind a `pyenv` shim, or `python3` itself.
fn python() -> Option<String> {
    if !tool("python3") {
        return None;
    }
    let out =
        Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

const THREADED_PY: &str = r#"
import threading, json
out = []
def work(k):
    d = {}
    for i in range(20000):
        d[str(i)] = [i, str(i) * (i % 7), (i, k)]
        if i % 3 == 0:
            del d[str(i // 2)]
    out.append(len(json.dumps(d)))
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(sorted(out))
"#;

#[test]
fn python_threaded_workload() {
    let Some(py) = python() else { return };
    let with = preloaded(&mut Command::new(&py)).args(["-c", THREADED_PY]).output().unwrap();
    let without = Command::new(&py).args(["-c", THREADED_PY]).output().unwrap();
    assert!(with.status.success(), "{}", show(&with));
    assert_eq!(with.stdout, without.stdout);
}

/// The names of the failed tests in a `python3 -m test` log (`FAIL: name (class)` lines).
fn failed_tests(log: &str) -> Vec<String> {
    let mut v: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL: ").or_else(|| l.strip_prefix("ERROR: ")))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn cpython_regression_tests() {
    let Some(py) = python() else { return };
    let mods = ["test_list", "test_dict", "test_set", "test_json"];
    let run = |preload: bool| {
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "test", "-v"]).args(mods);
        if preload {
            preloaded(&mut cmd);
        }
        cmd.output().unwrap()
    };
    let with = run(true);
    let text = String::from_utf8_lossy(&with.stdout).into_owned();
    if !with.status.success() && text.contains("No module named test") {
        println!("skipped: this python3 has no test package");
        return;
    }
    if with.status.success() {
        assert!(text.contains("Result: SUCCESS"), "{}", show(&with));
        return;
    }
    // A failure counts only if the same modules pass, or fail otherwise, without the library.
    let without = run(false);
    let base = String::from_utf8_lossy(&without.stdout);
    assert_eq!(failed_tests(&text), failed_tests(&base), "{}", show(&with));
    println!("fails alike without the library: {:?}", failed_tests(&base));
}

#[test]
fn sqlite3_on_a_generated_database() {
    if !tool("sqlite3") {
        return;
    }
    let dir = tempdir("sqlite");
    let sql = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
        INSERT INTO t SELECT x, 'name-' || x || substr('abcdefghij', 1, x % 10), x * 0.5 FROM c;
        CREATE INDEX ti ON t(name);
        DELETE FROM t WHERE id % 3 = 0;
        VACUUM;
        SELECT count(*), sum(v), max(name), sum(length(name)) FROM t;";
    let run = |db: &str, preload: bool| {
        let mut cmd = Command::new("sqlite3");
        cmd.arg(dir.join(db)).arg(sql);
        if preload {
            preloaded(&mut cmd);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        out.stdout
    };
    assert_eq!(run("with.db", true), run("without.db", false));
}

#[test]
fn gcc_compiles_a_small_c_file() {
    let Some(exe) = compile("holds_again", HOLDS) else { return };
    let dir = exe.parent().unwrap();
    let build = |out: &str, preload: bool| {
        let mut cmd = Command::new("cc");
        cmd.args(["-O2", "-Wall", "-o"]).arg(dir.join(out)).arg(dir.join("holds_again.c"));
        if preload {
            preloaded(&mut cmd);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", show(&o));
        std::fs::read(dir.join(out)).unwrap()
    };
    assert_eq!(build("with", true), build("without", false), "the same binary either way");
}

/// One decoded record of the trace format (see `src/record.rs`).
#[derive(Debug, PartialEq)]
enum Rec {
    Malloc(u64, u64),
    Calloc(u64, u64, u64),
    Realloc(u64, u64, u64),
    Free(u64),
    Mark(String),
    End(i64),
}

/// Decodes a whole trace: (header JSON, records). Panics on anything malformed.
fn decode(data: &[u8]) -> (String, Vec<Rec>) {
    assert_eq!(&data[..8], b"ARENATRC");
    assert_eq!(u32::from_le_bytes(data[8..12].try_into().unwrap()), 1);
    let n = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    let header = String::from_utf8(data[16..16 + n].to_vec()).unwrap();
    let mut at = 16 + n;
    let mut last = 0u64;
    let varint = |at: &mut usize| {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = data[*at];
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                return v;
            }
        }
    };
    let unzig = |z: u64| ((z >> 1) as i64) ^ -((z & 1) as i64);
    let mut recs = Vec::new();
    while at < data.len() {
        let tag = data[at];
        at += 1;
        let mut addr = |at: &mut usize| {
            last = last.wrapping_add(unzig(varint(at)) as u64);
            last
        };
        recs.push(match tag {
            0x01 => Rec::Malloc(varint(&mut at), addr(&mut at)),
            0x02 => Rec::Calloc(varint(&mut at), varint(&mut at), addr(&mut at)),
            0x03 => {
                let p = addr(&mut at);
                Rec::Realloc(p, varint(&mut at), addr(&mut at))
            }
            0x04 => Rec::Free(addr(&mut at)),
            0x07 => {
                let n = varint(&mut at) as usize;
                let label = String::from_utf8(data[at..at + n].to_vec()).unwrap();
                at += n;
                assert_eq!(varint(&mut at), 0, "no report text in a native trace");
                Rec::Mark(label)
            }
            0x08 => Rec::End(unzig(varint(&mut at))),
            t => panic!("unknown tag {t:#x} at byte {at}"),
        });
    }
    (header, recs)
}

const RECORDED: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    void *p = malloc(1000), *q = calloc(10, 30);
    void *r = realloc(p, 5000);
    free(q);
    free(r);
    void *a = NULL;
    if (posix_memalign(&a, 64, 100)) return 1;
    free(a);
    printf("%lu %lu %lu %lu %s\n", (unsigned long)p, (unsigned long)q, (unsigned long)r,
           (unsigned long)a, argv[1]);
    return 0;
}
"#;

#[test]
fn record_mode_writes_every_call_in_the_trace_format() {
    let Some(exe) = compile("recorded", RECORDED) else { return };
    let trace = exe.with_extension("trace");
    let out = run_ok(&exe, &[("ARENALAB_TRACE", trace.to_str().unwrap())]);
    let printed = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = printed.split_whitespace().take(4).map(|w| w.parse().unwrap()).collect();
    let (p, q, r, a) = (v[0], v[1], v[2], v[3]);
    let (header, recs) = decode(&std::fs::read(&trace).unwrap());
    assert!(header.starts_with(r#"{"source":"native","#), "{header}");
    assert!(header.contains(r#""layout":"32c-16k-1m-keep","classes":32"#), "{header}");
    assert!(header.contains(&format!(r#""executable":"{}""#, exe.display())), "{header}");
    // The program's calls, in order, among libc's own (stdio's buffer); the aligned request is
    // recorded as a malloc of its size.
    let mine = [
        Rec::Malloc(1000, p),
        Rec::Calloc(10, 30, q),
        Rec::Realloc(p, 5000, r),
        Rec::Free(q),
        Rec::Free(r),
        Rec::Malloc(100, a),
        Rec::Free(a),
    ];
    let mut next = mine.iter().peekable();
    for rec in &recs {
        if next.peek() == Some(&rec) {
            next.next();
        }
    }
    assert!(next.peek().is_none(), "missing {:?} in {recs:?}", next.peek());
    let n = recs.len();
    assert_eq!(recs[n - 2..], [Rec::Mark("exit".into()), Rec::End(0)]);
}
