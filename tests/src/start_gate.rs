//! A gate a test lambda asks as it starts (`urlopen(url).read()`): it answers `crash` or `ok`,
//! as the test sets it, so a lambda that started once can be made to crash on its next start.
//! Used by the failed-wake tests of lambda-deploy and lambda-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The gate's URL and its switch (`true`: answer `crash`).
pub async fn gate() -> (String, Arc<AtomicBool>) {
    let crash = Arc::new(AtomicBool::new(false));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let flag = crash.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let crash = flag.load(Ordering::SeqCst);
            async move { if crash { "crash" } else { "ok" } }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, crash)
}

/// `lambda_main.py` of a lambda that asks the gate at `os.environ[var]` as it starts and exits
/// with "refusing to start: the gate says crash" when told to.
pub fn gated_main(var: &str) -> String {
    format!(
        "import os\nimport urllib.request\n\nif urllib.request.urlopen(os.environ['{var}']).read() == b'crash':\n    raise SystemExit('refusing to start: the gate says crash')\n\n\nasync def main(request):\n    return {{'ok': True}}\n"
    )
}
