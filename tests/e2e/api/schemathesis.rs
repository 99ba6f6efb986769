//! Generated requests against the OpenAPI documents (schemathesis, from PyPI): no answer is a
//! 5xx, every answer's status, content type, headers and body match the document, and input
//! the document calls invalid is refused.

use std::path::PathBuf;
use std::process::Command;

use crate::support::app::TestApp;
use crate::support::local::root;
use crate::support::stack::serve_ws;

fn schemathesis() -> PathBuf {
    let stack =
        std::env::var_os("SPRAYER_STACK_DIR").map_or_else(|| root().join(".stack"), PathBuf::from);
    let binary = stack.join("venv/bin/schemathesis");
    assert!(
        binary.exists(),
        "{} is missing: run `make test` (it installs schemathesis)",
        binary.display()
    );
    binary
}

/// Runs schemathesis against `document` with `token`; returns the cases generated.
fn run(document: &str, token: &str, examples: u32) -> u64 {
    let output = Command::new(schemathesis())
        .args(["run", document])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Every check but one: a request the document allows may still be refused with a 422
        // problem naming the field, since the document cannot state every rule (one recipient
        // form of three, a served channel, an address that parses for its channel).
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", &examples.to_string()])
        // One worker: with several, Python 3.11 trips over its own parser in hypothesis.
        .args(["--workers", "1"])
        .args(["--no-color", "--request-timeout", "10"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its example database goes to the working directory: keep it out of the checkout.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}"
    );
    // The summary reads "<N> generated, <N> passed, ...".
    let generated = text
        .lines()
        .find_map(|line| {
            let (count, _) = line.trim().split_once(" generated, ")?;
            count.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no case count in:\n{text}"));
    eprintln!("schemathesis: {generated} cases against {document}, no failures");
    generated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_5xx_and_answers_match_the_openapi_documents() {
    let app = TestApp::spawn_with(serve_ws).await;
    let (api, key) = (format!("{}/openapi.json", app.base), app.key.clone());
    let (admin, token) = (format!("{}/openapi.json", app.admin), app.admin_token());
    let (api_cases, admin_cases) =
        tokio::task::spawn_blocking(move || (run(&api, &key, 100), run(&admin, &token, 30)))
            .await
            .expect("schemathesis finished");
    assert!(
        api_cases + admin_cases >= 1_000,
        "only {} cases",
        api_cases + admin_cases
    );
}
