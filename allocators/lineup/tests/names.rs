//! Names, parsing and serialisation round-trip.
use lineup::{Allocator, Release};

#[test]
fn names_round_trip_through_from_name_from_str_and_serde() {
    for a in Allocator::ALL {
        assert_eq!(Allocator::from_name(a.name()), Some(a));
        assert_eq!(a.name().parse::<Allocator>(), Ok(a));
        assert_eq!(a.to_string(), a.name());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.name()));
        assert_eq!(serde_json::from_str::<Allocator>(&json).unwrap(), a);
    }
}

#[test]
fn an_unknown_name_is_refused_with_the_name_in_the_message() {
    assert_eq!(Allocator::from_name("tcmalloc"), None);
    let e = "tcmalloc".parse::<Allocator>().unwrap_err();
    assert!(e.contains("\"tcmalloc\"") && e.contains("jemalloc"), "{e}");
}

#[test]
fn stats_and_release_serialise_and_come_back() {
    let s = Allocator::Pymalloc.stats();
    let back: lineup::AllocatorStats =
        serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let r = Allocator::Pymalloc.release();
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("not_available"), "{json}");
    assert_eq!(serde_json::from_str::<Release>(&json).unwrap(), r);
    assert_eq!(r.call(), None);
}
