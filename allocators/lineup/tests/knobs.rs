//! Knobs: every listed knob can be set to its default, and unknown names or refused values are
//! errors naming them.
use lineup::{Allocator, KnobError};

#[test]
fn every_listed_knob_accepts_its_default() {
    for a in Allocator::ALL {
        for k in a.knobs() {
            let v = k.default.expect("every knob here has a known default");
            a.set_knob(k.name, v).unwrap_or_else(|e| panic!("{a} {}: {e}", k.name));
        }
    }
}

#[test]
fn an_unknown_knob_is_an_error_naming_it() {
    for a in Allocator::ALL {
        let e = a.set_knob("M_NO_SUCH", 1).unwrap_err();
        assert!(matches!(&e, KnobError::Unknown { name, .. } if name == "M_NO_SUCH"));
        assert!(e.to_string().contains("M_NO_SUCH"), "{e}");
    }
    let e = Allocator::Pymalloc.set_knob("purge_delay", 0).unwrap_err();
    assert!(e.to_string().contains("none"), "{e}");
}

#[test]
fn a_value_out_of_range_is_rejected_naming_knob_and_value() {
    let e = Allocator::System.set_knob("M_MMAP_THRESHOLD", 64 << 20).unwrap_err();
    assert!(matches!(e, KnobError::Rejected { value, .. } if value == 64 << 20));
    let e = Allocator::Jemalloc.set_knob("dirty_decay_ms", -2).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("dirty_decay_ms") && text.contains("-2"), "{text}");
    let e = Allocator::Mimalloc.set_knob("purge_delay", i64::MAX).unwrap_err();
    assert!(matches!(e, KnobError::Rejected { .. }));
}

#[test]
fn knob_lists_match_each_allocator() {
    let names = |a: Allocator| a.knobs().iter().map(|k| k.name).collect::<Vec<_>>();
    assert_eq!(names(Allocator::System), ["M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD"]);
    assert_eq!(names(Allocator::Mimalloc), ["purge_delay"]);
    assert_eq!(names(Allocator::Jemalloc), ["dirty_decay_ms", "muzzy_decay_ms"]);
    assert!(names(Allocator::Pymalloc).is_empty());
}
