//! # lambda-py
//!
//! The `luna_lambda_rs` Python module (its native part, `luna_lambda_rs._native`), built with
//! maturin. Thin: every function calls lambda-core or lambda-server's typed client; blocking
//! calls release the GIL and run on a runtime owned by the module. The Python package
//! (`python/luna_lambda_rs`) adds the async client and the context manager.

use lambda_core::archive::{Limits, validate_bytes_for};
use lambda_core::render::{DockerfileSpec, render_dockerfile as render};
use lambda_core::{BaseImage, LambdaId, LambdaName, LambdaType};
use lambda_server::client::{Client as HttpClient, ClientError};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pyo3::create_exception!(
    luna_lambda_rs,
    LambdaError,
    PyException,
    "Any error of the platform; `error_code` and `status` tell which."
);
pyo3::create_exception!(
    luna_lambda_rs,
    ValidationError,
    LambdaError,
    "The archive or the parameters are invalid (42005); `problems` lists them."
);
pyo3::create_exception!(
    luna_lambda_rs,
    NotFound,
    LambdaError,
    "No such lambda (42001)."
);
pyo3::create_exception!(
    luna_lambda_rs,
    Conflict,
    LambdaError,
    "A name conflict (42002) or an update not allowed now (42006)."
);
pyo3::create_exception!(
    luna_lambda_rs,
    ServerError,
    LambdaError,
    "The server failed (5xx) or cannot be reached."
);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("luna-lambda-rs")
            .enable_all()
            .build()
            .expect("a tokio runtime for luna_lambda_rs")
    })
}

/// One validation problem.
#[pyclass(frozen, get_all, module = "luna_lambda_rs")]
#[derive(Clone, Debug)]
struct Problem {
    code: String,
    path: String,
    message: String,
    severity: String,
    line: Option<u32>,
    column: Option<u32>,
}

#[pymethods]
impl Problem {
    fn __repr__(&self) -> String {
        format!(
            "Problem(code={:?}, path={:?}, line={:?}, message={:?})",
            self.code, self.path, self.line, self.message
        )
    }
}

impl From<&lambda_core::Problem> for Problem {
    fn from(p: &lambda_core::Problem) -> Self {
        Self {
            code: p.code.clone(),
            path: p.path.clone(),
            message: p.message.clone(),
            severity: match p.severity {
                lambda_core::Severity::Error => "error".into(),
                lambda_core::Severity::Warning => "warning".into(),
            },
            line: p.line,
            column: p.column,
        }
    }
}

/// The verdict on an archive: `ok` and every problem (warnings included).
#[pyclass(frozen, get_all, module = "luna_lambda_rs")]
#[derive(Clone, Debug)]
struct Report {
    ok: bool,
    problems: Vec<Problem>,
}

#[pymethods]
impl Report {
    fn __repr__(&self) -> String {
        format!(
            "Report(ok={}, problems={})",
            if self.ok { "True" } else { "False" },
            self.problems.len()
        )
    }
    fn __bool__(&self) -> bool {
        self.ok
    }
}

/// Bytes of a lambda given as bytes, or a path to a .zip or a folder (packed).
fn lambda_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let path: std::path::PathBuf = obj.extract().map_err(|_| {
        PyValueError::new_err("expected bytes (a zip) or a path to a .zip or a lambda folder")
    })?;
    obj.py().detach(|| {
        if path.is_dir() {
            lambda_core::pack::pack_dir(&path).map_err(|e| PyValueError::new_err(e.to_string()))
        } else {
            std::fs::read(&path)
                .map_err(|e| PyValueError::new_err(format!("cannot read {}: {e}", path.display())))
        }
    })
}

/// Validates a lambda (bytes, a .zip path or a folder) the way the server does.
#[pyfunction]
#[pyo3(signature = (archive, lambda_type="standalone"))]
fn validate(archive: &Bound<'_, PyAny>, lambda_type: &str) -> PyResult<Report> {
    let ty: lambda_core::LambdaType = lambda_type
        .parse()
        .map_err(|e: lambda_core::Error| PyValueError::new_err(e.to_string()))?;
    let bytes = lambda_bytes(archive)?;
    let (ok, problems) =
        archive.py().detach(
            || match validate_bytes_for(&bytes, &Limits::default(), ty) {
                Ok(a) => (true, a.warnings),
                Err(r) => (false, r.problems),
            },
        );
    Ok(Report {
        ok,
        problems: problems.iter().map(Problem::from).collect(),
    })
}

/// Packs a folder into a deterministic zip.
#[pyfunction]
fn pack<'py>(py: Python<'py>, folder: std::path::PathBuf) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = py
        .detach(|| lambda_core::pack::pack_dir(&folder))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &bytes))
}

/// The Dockerfile the platform renders for a lambda.
#[pyfunction]
#[pyo3(signature = (*, base_image="lpa-lambda-base", base_tag="latest", registry=None, has_requirements=false, user_docker_commands=None, lambda_type="standalone"))]
fn render_dockerfile(
    py: Python<'_>,
    base_image: &str,
    base_tag: &str,
    registry: Option<&str>,
    has_requirements: bool,
    user_docker_commands: Option<Vec<String>>,
    lambda_type: &str,
) -> PyResult<String> {
    let base = match base_image {
        "lpa-lambda-base" => BaseImage::Base,
        "lpa-lambda-base-fsdk" => BaseImage::Fsdk,
        other => {
            return Err(PyValueError::new_err(format!(
                "base_image {other:?}: use lpa-lambda-base or lpa-lambda-base-fsdk"
            )));
        }
    };
    let lambda_type: LambdaType = lambda_type
        .parse()
        .map_err(|e: lambda_core::Error| PyValueError::new_err(e.to_string()))?;
    let cmds = user_docker_commands.unwrap_or_default();
    let problems = lambda_core::docker_commands::check(&cmds);
    if !problems.is_empty() {
        let err = ValidationError::new_err(
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        );
        err.value(py).setattr("error_code", 42005)?;
        err.value(py).setattr(
            "problems",
            problems.iter().map(Problem::from).collect::<Vec<_>>(),
        )?;
        return Err(err);
    }
    Ok(render(&DockerfileSpec {
        registry,
        base_image: base,
        base_tag,
        has_requirements,
        user_docker_commands: &cmds,
        lambda_type,
        pip_index_url: None,
        pip_ca_bundle: false,
    }))
}

/// Maps a client error to the exception hierarchy, keeping the error code.
fn to_py(py: Python<'_>, e: ClientError) -> PyErr {
    let message = e.to_string();
    let build = |err: PyErr, code: Option<u32>, status: Option<u16>| -> PyErr {
        let v = err.value(py);
        let _ = v.setattr("error_code", code);
        let _ = v.setattr("status", status);
        err
    };
    match e {
        ClientError::Api { status, body } => {
            let err = match body.error_code {
                42005 => ValidationError::new_err(message),
                42001 | 42021 => NotFound::new_err(message),
                42002 | 42006 | 42023 => Conflict::new_err(message),
                _ if status >= 500 => ServerError::new_err(message),
                _ => LambdaError::new_err(message),
            };
            let problems: Vec<Problem> =
                body.problems.iter().flatten().map(Problem::from).collect();
            let _ = err.value(py).setattr("problems", problems);
            let _ = err.value(py).setattr("detail", body.detail.clone());
            build(err, Some(body.error_code), Some(status))
        }
        ClientError::Connect { .. } => build(ServerError::new_err(message), None, None),
        _ => build(LambdaError::new_err(message), None, None),
    }
}

fn json_to_py(py: Python<'_>, v: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = obj
        .py()
        .import("json")?
        .call_method1("dumps", (obj,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn lambda_id(s: &str) -> PyResult<LambdaId> {
    s.parse()
        .map_err(|e: lambda_core::Error| PyValueError::new_err(e.to_string()))
}

/// A proxied answer.
#[pyclass(frozen, get_all, module = "luna_lambda_rs")]
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: Py<PyBytes>,
}

#[pymethods]
impl Response {
    /// The body parsed as JSON.
    fn json(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py
            .import("json")?
            .call_method1("loads", (self.body.bind(py),))?
            .unbind())
    }
    fn __repr__(&self) -> String {
        format!("Response(status={})", self.status)
    }
}

/// A client of a luna-lambda-rs server. Every method blocks with the GIL released. The Python
/// `Client` subclasses it to default `token` to `LUNA_LAMBDA_TOKEN`.
#[pyclass(frozen, subclass, module = "luna_lambda_rs")]
struct Client {
    inner: HttpClient,
}

impl Client {
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl for<'a> FnOnce(
            &'a HttpClient,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, ClientError>> + Send + 'a>,
        > + Send,
    ) -> PyResult<T> {
        let inner = &self.inner;
        py.detach(|| runtime().block_on(f(inner)))
            .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url, account_id=None, token=None, ca=None))]
    fn new(
        url: &str,
        account_id: Option<&str>,
        token: Option<String>,
        ca: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let account = account_id
            .map(uuid::Uuid::parse_str)
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("account_id: {e}")))?;
        let mut inner = HttpClient::new(url, account)
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .with_token(token);
        if let Some(ca) = ca {
            inner = inner
                .with_ca_file(&ca)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        Ok(Self { inner })
    }

    /// The server URL.
    #[getter]
    fn url(&self) -> String {
        self.inner.base().to_owned()
    }

    /// Creates a lambda; returns its id.
    #[pyo3(signature = (archive, name, lambda_type="standalone", parameters=None))]
    fn create(
        &self,
        py: Python<'_>,
        archive: &Bound<'_, PyAny>,
        name: &str,
        lambda_type: &str,
        parameters: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let bytes = lambda_bytes(archive)?;
        let creds = lambda_core::api::Credentials {
            lambda_name: LambdaName::parse(name)
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
            lambda_type: lambda_type
                .parse()
                .map_err(|e: lambda_core::Error| PyValueError::new_err(e.to_string()))?,
        };
        let params = parameters.map(py_to_json).transpose()?;
        let r = self.run(py, |c| {
            Box::pin(async move { c.create(bytes, &creds, params.as_ref()).await })
        })?;
        Ok(r.lambda_id.to_string())
    }

    /// A new version from a new archive (or the stored one) and/or parameters; returns it.
    #[pyo3(signature = (lambda_id, archive=None, parameters=None))]
    fn update(
        &self,
        py: Python<'_>,
        lambda_id: &str,
        archive: Option<&Bound<'_, PyAny>>,
        parameters: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let id = self::lambda_id(lambda_id)?;
        let bytes = archive.map(lambda_bytes).transpose()?;
        let params = parameters.map(py_to_json).transpose()?;
        let r = self.run(py, |c| {
            Box::pin(async move { c.update(&id, bytes, params.as_ref()).await })
        })?;
        Ok(r.lambda_version)
    }

    /// The record (a dict).
    fn get(&self, py: Python<'_>, lambda_id: &str) -> PyResult<Py<PyAny>> {
        let id = self::lambda_id(lambda_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.get(&id).await }))?;
        json_to_py(py, &r)
    }

    /// `{"lambdas": [...], "count": N}`
    #[pyo3(signature = (page=1, page_size=100, lambda_name=None))]
    fn list(
        &self,
        py: Python<'_>,
        page: u64,
        page_size: u64,
        lambda_name: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let r = self.run(py, |c| {
            Box::pin(async move { c.list(page, page_size, lambda_name.as_deref()).await })
        })?;
        json_to_py(py, &r)
    }

    /// Deploy status with each replica.
    fn status(&self, py: Python<'_>, lambda_id: &str) -> PyResult<Py<PyAny>> {
        let id = self::lambda_id(lambda_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.status(&id).await }))?;
        json_to_py(py, &r)
    }

    /// Runtime logs per replica.
    #[pyo3(signature = (lambda_id, tail=None))]
    fn logs(&self, py: Python<'_>, lambda_id: &str, tail: Option<usize>) -> PyResult<Py<PyAny>> {
        let id = self::lambda_id(lambda_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.logs(&id, tail).await }))?;
        json_to_py(py, &r.logs)
    }

    /// The build log.
    fn image_logs(&self, py: Python<'_>, lambda_id: &str) -> PyResult<String> {
        let id = self::lambda_id(lambda_id)?;
        self.run(py, |c| Box::pin(async move { c.image_logs(&id).await }))
    }

    /// Deletes a lambda.
    fn delete(&self, py: Python<'_>, lambda_id: &str) -> PyResult<()> {
        let id = self::lambda_id(lambda_id)?;
        self.run(py, |c| Box::pin(async move { c.delete(&id).await }))
    }

    /// Switches a lambda on or off; returns the record.
    fn switch(&self, py: Python<'_>, lambda_id: &str, alive: bool) -> PyResult<Py<PyAny>> {
        let id = self::lambda_id(lambda_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.switch(&id, alive).await }))?;
        json_to_py(py, &r)
    }

    /// Replaces the user config (restart without a rebuild).
    fn set_config(
        &self,
        py: Python<'_>,
        lambda_id: &str,
        config: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let id = self::lambda_id(lambda_id)?;
        let value = py_to_json(config)?;
        let r = self.run(py, |c| {
            Box::pin(async move { c.set_config(&id, &value).await })
        })?;
        Ok(r.lambda_version)
    }

    /// Calls the lambda through the proxy. `data`: bytes or str (sent as is) or any
    /// JSON-serialisable value (sent as JSON). Returns a Response whatever its status.
    #[pyo3(signature = (lambda_id, data=None, path="main", method="POST", headers=None))]
    fn invoke(
        &self,
        py: Python<'_>,
        lambda_id: &str,
        data: Option<&Bound<'_, PyAny>>,
        path: &str,
        method: &str,
        headers: Option<HashMap<String, String>>,
    ) -> PyResult<Response> {
        let id = self::lambda_id(lambda_id)?;
        let mut hs: Vec<(String, String)> = headers.unwrap_or_default().into_iter().collect();
        let body = match data {
            None => None,
            Some(d) => {
                if let Ok(b) = d.cast::<PyBytes>() {
                    Some(b.as_bytes().to_vec())
                } else if let Ok(s) = d.extract::<String>() {
                    Some(s.into_bytes())
                } else {
                    if !hs
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    {
                        hs.push(("content-type".into(), "application/json".into()));
                    }
                    Some(py_to_json(d)?.to_string().into_bytes())
                }
            }
        };
        let (path, method) = (path.to_owned(), method.to_owned());
        let r = self.run(py, |c| {
            Box::pin(async move { c.invoke(&id, &method, &path, &hs, body).await })
        })?;
        Ok(Response {
            status: r.status,
            headers: r.headers.into_iter().collect(),
            body: PyBytes::new(py, &r.body).unbind(),
        })
    }

    /// Waits (GIL released) until the lambda runs; returns the record. Raises LambdaError with
    /// the reason when its build or start fails, or when `timeout` seconds pass.
    #[pyo3(signature = (lambda_id, timeout=120.0))]
    fn wait_until_running(
        &self,
        py: Python<'_>,
        lambda_id: &str,
        timeout: f64,
    ) -> PyResult<Py<PyAny>> {
        let id = self::lambda_id(lambda_id)?;
        let r = self.run(py, |c| {
            Box::pin(async move {
                c.wait_until_running(&id, None, Duration::from_secs_f64(timeout.max(0.0)), |_| {})
                    .await
            })
        })?;
        json_to_py(py, &r)
    }

    /// Starts a task of a `tasks` lambda; `content` (a dict) is what its split gets. Returns the
    /// task id.
    #[pyo3(signature = (lambda_id, content=None, description=""))]
    fn create_task(
        &self,
        py: Python<'_>,
        lambda_id: &str,
        content: Option<&Bound<'_, PyAny>>,
        description: &str,
    ) -> PyResult<String> {
        let id = self::lambda_id(lambda_id)?;
        let mut content = match content.map(py_to_json).transpose()? {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(PyValueError::new_err("content must be a dict")),
        };
        content.insert("lambda_id".into(), id.to_string().into());
        let description = description.to_owned();
        let r = self.run(py, |c| {
            Box::pin(async move { c.create_task(&description, content).await })
        })?;
        Ok(r.to_string())
    }

    /// A task's record (status, subtask counts, times).
    fn get_task(&self, py: Python<'_>, task_id: &str) -> PyResult<Py<PyAny>> {
        let id = self::task_id(task_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.get_task(&id).await }))?;
        json_to_py(py, &r)
    }

    /// Tasks, newest first: `{"tasks": [...], "count": n}`.
    #[pyo3(signature = (lambda_id=None, status=None, page=1, page_size=100))]
    fn list_tasks(
        &self,
        py: Python<'_>,
        lambda_id: Option<&str>,
        status: Option<&str>,
        page: u64,
        page_size: u64,
    ) -> PyResult<Py<PyAny>> {
        let lambda = lambda_id.map(self::lambda_id).transpose()?;
        let status = status
            .map(|s| s.parse::<lambda_core::api::TaskStatus>())
            .transpose()
            .map_err(PyValueError::new_err)?;
        let r = self.run(py, |c| {
            Box::pin(async move { c.list_tasks(lambda.as_ref(), status, page, page_size).await })
        })?;
        json_to_py(py, &r)
    }

    /// Each subtask's result in order (`None` for a failed one).
    fn task_result(&self, py: Python<'_>, task_id: &str) -> PyResult<Py<PyAny>> {
        let id = self::task_id(task_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.task_result(&id).await }))?;
        json_to_py(py, &r.results)
    }

    /// The failed subtasks: `[{"subtask": n, "error": "..."}]`.
    fn task_errors(&self, py: Python<'_>, task_id: &str) -> PyResult<Py<PyAny>> {
        let id = self::task_id(task_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.task_errors(&id).await }))?;
        json_to_py(py, &r)
    }

    /// Cancels a task (no new subtask starts); returns its record.
    fn cancel_task(&self, py: Python<'_>, task_id: &str) -> PyResult<Py<PyAny>> {
        let id = self::task_id(task_id)?;
        let r = self.run(py, |c| Box::pin(async move { c.cancel_task(&id).await }))?;
        json_to_py(py, &r)
    }

    /// Deletes a task and its results.
    fn delete_task(&self, py: Python<'_>, task_id: &str) -> PyResult<()> {
        let id = self::task_id(task_id)?;
        self.run(py, |c| Box::pin(async move { c.delete_task(&id).await }))
    }

    /// Waits until a task is over (done, failed or cancelled); returns its record.
    #[pyo3(signature = (task_id, timeout=600.0))]
    fn wait_task(&self, py: Python<'_>, task_id: &str, timeout: f64) -> PyResult<Py<PyAny>> {
        let id = self::task_id(task_id)?;
        let r = self.run(py, |c| {
            Box::pin(async move {
                c.wait_task(&id, Duration::from_secs_f64(timeout.max(0.0)), |_| {})
                    .await
            })
        })?;
        json_to_py(py, &r)
    }
}

fn task_id(s: &str) -> PyResult<uuid::Uuid> {
    uuid::Uuid::parse_str(s)
        .map_err(|_| PyValueError::new_err(format!("{s:?} is not a task id (a UUID)")))
}

/// The whole platform, embedded: the server on the embedded default, in this process.
#[pyclass(frozen, module = "luna_lambda_rs")]
struct EmbeddedPlatform {
    url: String,
    /// The server (which holds the data folder's lock), until `close`.
    running: Mutex<Option<lambda_server::server::Running>>,
}

#[pymethods]
impl EmbeddedPlatform {
    /// Starts the platform with data in `data_dir`; `env` is the environment it reads its
    /// settings from (LUNA_LAMBDA_*, PATH for uv).
    #[staticmethod]
    #[pyo3(signature = (data_dir, env, listen="127.0.0.1:0"))]
    fn start(
        py: Python<'_>,
        data_dir: std::path::PathBuf,
        env: HashMap<String, String>,
        listen: &str,
    ) -> PyResult<Self> {
        let listen = listen.to_owned();
        let started: Result<lambda_server::server::Running, String> = py.detach(|| {
            runtime().block_on(async move {
                let mut cfg = lambda_server::Config::load(None, &env).map_err(|e| e.to_string())?;
                cfg.listen = listen.clone();
                std::fs::create_dir_all(&data_dir)
                    .map_err(|e| format!("{}: {e}", data_dir.display()))?;
                let setup = cfg
                    .setup(&data_dir, &env)
                    .await
                    .map_err(|e| e.to_string())?;
                lambda_server::server::start(setup, &listen)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let running = started.map_err(LambdaError::new_err)?;
        Ok(Self {
            url: running.url().to_owned(),
            running: Mutex::new(Some(running)),
        })
    }

    /// The platform's URL.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops the server (lambdas keep running, as after any graceful stop).
    fn close(&self, py: Python<'_>) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = running {
            py.detach(|| {
                let _ = runtime().block_on(r.stop());
            });
        }
    }
}

/// The native part of `luna_lambda_rs`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(pack, m)?)?;
    m.add_function(wrap_pyfunction!(render_dockerfile, m)?)?;
    m.add_class::<Problem>()?;
    m.add_class::<Report>()?;
    m.add_class::<Response>()?;
    m.add_class::<Client>()?;
    m.add_class::<EmbeddedPlatform>()?;
    m.add("LambdaError", py.get_type::<LambdaError>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("ServerError", py.get_type::<ServerError>())?;
    Ok(())
}
