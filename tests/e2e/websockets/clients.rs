//! The browser client as a package (`clients/js`): its own tests under Node's test runner
//! against the running server (Node has no WebSocket or EventSource, so they prove the
//! long-poll fallback), and `npm pack` making a tarball that installs and imports offline.

use std::process::Command;

use crate::support::app::TestApp;
use crate::support::local::{TempDir, root, run_command};
use crate::support::stack::serve_ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_package_passes_its_node_tests_against_the_server() {
    let app = TestApp::spawn_with(serve_ws).await;
    let token = app.ws_token("node-user").await;
    let ws = format!("{}/v1/ws", app.ws.as_deref().expect("ws"));
    let (base, key) = (app.base.clone(), app.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        run_command(
            Command::new("node")
                .args(["--test", "test/"])
                .current_dir(root().join("clients/js"))
                .env("SPRAYER_TEST_WS_URL", ws)
                .env("SPRAYER_TEST_API", base)
                .env("SPRAYER_TEST_KEY", key)
                .env("SPRAYER_TEST_USER", "node-user")
                .env("SPRAYER_TEST_TOKEN", token),
        )
    })
    .await
    .expect("node ran");
    assert!(output.contains("# pass 4"), "{output}");
    assert!(output.contains("# fail 0"), "{output}");
}

#[test]
fn npm_pack_makes_a_tarball_that_installs_and_imports_offline() {
    let dir = TempDir::new("sprayer-npm-pack");
    let packed = run_command(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(dir.path())
            .current_dir(root().join("clients/js")),
    );
    let tarball = dir.path().join(packed.trim());
    assert!(tarball.exists(), "npm pack answered {packed:?}");
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).expect("a project folder");
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "probe", "version": "1.0.0", "type": "module", "private": true}"#,
    )
    .expect("package.json");
    run_command(
        Command::new("npm")
            .args(["install", "--offline", "--no-audit", "--no-fund"])
            .arg(&tarball)
            .current_dir(&project),
    );
    let installed = project.join("node_modules/@sprayer/client");
    for file in [
        "sprayer-client.js",
        "sprayer-client.d.ts",
        "README.md",
        "package.json",
    ] {
        assert!(installed.join(file).exists(), "{file} is in the package");
    }
    assert!(
        !installed.join("test").exists(),
        "the tests stay out of the package"
    );
    let imported = run_command(Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "import { SprayerClient } from '@sprayer/client'; \
             const client = new SprayerClient({ url: 'ws://127.0.0.1:1/v1/ws', token: 't' }); \
             console.log(typeof SprayerClient, client.transports.join(','), typeof client.inbox.markAllRead);",
        ])
        .current_dir(&project));
    assert_eq!(imported.trim(), "function poll function");
}
