//! The Python SDK (`clients/python`): `pip install` makes it importable, and its own pytest
//! suite passes against the running server, including the check that every route of the
//! OpenAPI documents has a method.

use std::process::Command;

use crate::support::app::TestApp;
use crate::support::local::{TempDir, root, run_command};
use crate::support::peers::python;
use crate::support::stack::serve_ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_installs_with_pip_and_passes_its_tests_against_the_server() {
    let app = TestApp::spawn_with(serve_ws).await;
    let site = TempDir::new("sprayer-python-sdk");
    let python = python();
    // Built from a copy: pip builds in the source folder, which stays as it is.
    let source = site.path().join("source");
    run_command(
        Command::new("cp")
            .arg("-r")
            .arg(root().join("clients/python"))
            .arg(&source),
    );
    run_command(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--target",
            ])
            .arg(site.path().join("site"))
            .arg(&source),
    );
    assert!(
        site.path().join("site/sprayer/py.typed").exists(),
        "the installed package is marked typed"
    );
    let (api, key, admin, token) = (
        app.base.clone(),
        app.key.clone(),
        app.admin.clone(),
        app.admin_token(),
    );
    let site_path = site.path().join("site");
    let output = tokio::task::spawn_blocking(move || {
        run_command(
            Command::new(&python)
                .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
                .current_dir(root().join("clients/python"))
                .env("PYTHONPATH", &site_path)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("SPRAYER_TEST_API", api)
                .env("SPRAYER_TEST_KEY", key)
                .env("SPRAYER_TEST_ADMIN_API", admin)
                .env("SPRAYER_TEST_ADMIN_TOKEN", token),
        )
    })
    .await
    .expect("pytest ran");
    assert!(output.contains("7 passed"), "{output}");
}
