//! The trace format round-trips every record, and damaged bytes are an error, never a panic.

use arenalab::trace::format::{
    self, Domain, Encoder, Event, FormatError, Header, Reader, Source, read_header,
};
use arenalab::trace::program::{CompileError, compile};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn addr(&mut self) -> u64 {
        match self.next() % 4 {
            0 => 0,
            1 => u64::MAX - self.next() % 4096,
            _ => 0x7f00_0000_0000 + (self.next() % (1 << 30)) * 16,
        }
    }
}

fn header() -> Header {
    Header {
        source: Source::Cpython,
        python_version: [3, 11, 7],
        layout: "32c-16k-1m-keep".into(),
        classes: 32,
        executable: "python3".into(),
        libpython: "libpython3.11.so".into(),
        script: "s.py".into(),
        args: vec!["a".into()],
    }
}

fn random_events(rng: &mut Rng, n: usize) -> Vec<(u8, [u64; 3], Vec<u8>)> {
    (0..n)
        .map(|_| {
            let kind = (rng.next() % 7) as u8;
            let v = [rng.addr(), rng.next() >> (rng.next() % 64), rng.addr()];
            let text = (0..rng.next() % 40).map(|i| b'a' + (i % 26) as u8).collect();
            (kind, v, text)
        })
        .collect()
}

#[test]
fn every_record_round_trips() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let events = random_events(&mut rng, 20_000);
    let mut buf = vec![0u8; 4 << 20];
    let mut e = Encoder::new(&mut buf);
    let d = |k: u8| if k.is_multiple_of(2) { Domain::Mem } else { Domain::Obj };
    for (k, v, t) in &events {
        match k {
            0 => e.malloc(d(*k), v[1], v[0]),
            1 => e.calloc(d(*k), v[1], v[1] >> 3, v[0]),
            2 => e.realloc(d(*k), v[0], v[1], v[2]),
            3 => e.free(d(*k), v[0]),
            4 => e.arena_alloc(v[1], v[0]),
            5 => e.arena_free(v[0], v[1]),
            _ => e.mark(t, &t.repeat(3)),
        }
    }
    e.end(-7);
    let n = e.len();
    let mut r = Reader::new(&buf[..n]);
    for (k, v, t) in &events {
        let got = r.next().unwrap().unwrap();
        let want = match k {
            0 => Event::Malloc { domain: d(*k), size: v[1], result: v[0] },
            1 => Event::Calloc { domain: d(*k), nelem: v[1], elsize: v[1] >> 3, result: v[0] },
            2 => Event::Realloc { domain: d(*k), ptr: v[0], size: v[1], result: v[2] },
            3 => Event::Free { domain: d(*k), ptr: v[0] },
            4 => Event::ArenaAlloc { size: v[1], result: v[0] },
            5 => Event::ArenaFree { ptr: v[0], size: v[1] },
            _ => {
                assert_eq!(got, Event::Mark { label: t, stats: &t.repeat(3) });
                continue;
            }
        };
        assert_eq!(got, want);
    }
    assert_eq!(r.next().unwrap(), Some(Event::End { status: -7 }));
    assert_eq!(r.next().unwrap(), None);
}

#[test]
fn a_trace_cut_anywhere_is_an_error_not_a_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let events = random_events(&mut rng, 300);
    let mut data = format::write_header(&header());
    let mut buf = vec![0u8; 1 << 16];
    let mut e = Encoder::new(&mut buf);
    for (k, v, t) in &events {
        match k % 3 {
            0 => e.malloc(Domain::Obj, v[1] % 600, v[0]),
            1 => e.free(Domain::Obj, v[0]),
            _ => e.mark(t, t),
        }
    }
    e.end(0);
    let n = e.len();
    data.extend_from_slice(&buf[..n]);
    assert!(compile(&data).is_ok());
    for cut in 0..data.len() {
        match compile(&data[..cut]) {
            Err(CompileError::Format(
                FormatError::NotATrace | FormatError::Truncated(_) | FormatError::Header(_),
            ))
            | Err(CompileError::NoEnd(_)) => {}
            other => panic!("cut at {cut}: {:?}", other.map(|p| p.calls)),
        }
    }
    // A damaged tag is named with its offset.
    let (_, start) = read_header(&data).unwrap();
    let mut bad = data.clone();
    bad[start] = 0x3f;
    assert!(matches!(
        compile(&bad),
        Err(CompileError::Format(FormatError::BadTag { tag: 0x3f, at })) if at == start
    ));
    // Another format version is refused by number.
    let mut v2 = data.clone();
    v2[8] = 2;
    assert!(matches!(compile(&v2), Err(CompileError::Format(FormatError::Version(2)))));
}
