//! Every fuzz target's committed seeds (`fuzz/seeds/<target>`) and every crashing input kept so
//! far (`fuzz/regressions/<target>`), replayed through the target's body in its crate: what
//! `make fuzz` found stays fixed, at the cost of an ordinary test.

use std::path::Path;

/// Runs `body` on every input of `target`; returns how many there were.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for folder in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let input = std::fs::read(&path).expect("a fuzz input");
            // A panic here names the input that broke the rule.
            eprintln!("replaying {}", path.display());
            body(&input);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn message_json_seeds_and_past_crashes_replay() {
    let replayed = replay("message_json", sprayer_accepter::fuzzing::message_json);
    assert!(replayed > 0, "no input of message_json");
}

#[test]
fn ws_frame_seeds_and_past_crashes_replay() {
    let replayed = replay("ws_frame", sprayer_deliverer::fuzzing::ws_frame);
    assert!(replayed > 0, "no input of ws_frame");
}

#[test]
fn smpp_pdu_seeds_and_past_crashes_replay() {
    let replayed = replay("smpp_pdu", sprayer_dispatcher::fuzzing::smpp_pdu);
    assert!(replayed > 0, "no input of smpp_pdu");
}
