//! `Credentials`, `AccessToken` and `Explanation`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use workload_auth::core::runtime;
use workload_auth::{
    AccessToken as RustAccessToken, CredentialType, CredentialsBuilder, MdsMtlsMode,
};

use crate::errors::{IntoPy, deadline_exceeded, invalid_argument, py_repr, py_repr_opt};

/// Scopes from Python: a sequence of `str`, or one `str` (one scope, as google-auth takes it;
/// a `str` is a sequence of characters, which would otherwise be refused confusingly).
pub(crate) fn scope_list(scopes: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<String>>> {
    let Some(scopes) = scopes else {
        return Ok(None);
    };
    if let Ok(one) = scopes.cast::<PyString>() {
        return Ok(Some(vec![one.to_cow()?.into_owned()]));
    }
    scopes.extract::<Vec<String>>().map(Some).map_err(|_| {
        let name = scopes
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        pyo3::exceptions::PyTypeError::new_err(format!(
            "scopes must be a str or a sequence of str, not {name}"
        ))
    })
}

/// Application Default Credentials and their token caches. Thread-safe; share one.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct Credentials {
    inner: workload_auth::Credentials,
    /// The fork generation (`crate::forks()`) `inner` was built in.
    generation: u64,
    /// How `inner` was built: to rebuild it after `fork()`, and to pickle.
    recipe: Recipe,
    /// In a forked child: the credentials rebuilt there (and that child's fork generation).
    rebuilt: Mutex<Option<(u64, workload_auth::Credentials)>>,
}

/// What `__reduce__` answers: the restoring function and its arguments (format, state).
type Reduced<'py> = (Bound<'py, PyAny>, (u32, Bound<'py, PyDict>));

/// The version of the pickled form of `Credentials`; a pickle of another is refused.
const PICKLE_FORMAT: u32 = 1;

/// What a `Credentials` was built from. Never a token; a key only in `json`, which is kept in
/// memory to rebuild after `fork()` but never pickled.
#[derive(Clone, Default)]
struct Recipe {
    /// The constructor: `default`, `from_file`, `from_json`, `from_service_account_file`, ...
    factory: String,
    path: Option<PathBuf>,
    json: Option<String>,
    scopes: Option<Vec<String>>,
    quota_project: Option<String>,
    metadata_host: Option<String>,
    /// The metadata server transport (`none`, `default`, `strict`) and its files' directory.
    metadata_mtls_mode: Option<String>,
    metadata_mtls_dir: Option<PathBuf>,
    allowed_types: Option<Vec<String>>,
    allowed_endpoints: Option<Vec<String>>,
    /// `default(regional_access_boundary=...)`: `None` lets the environment decide.
    regional_access_boundary: Option<bool>,
    /// `default(iam_credentials_endpoint=...)`: where the regional boundary is looked up.
    iam_credentials_endpoint: Option<String>,
}

impl Recipe {
    fn builder(&self, py: Python<'_>) -> PyResult<CredentialsBuilder> {
        let mut b = builder(
            self.scopes.clone(),
            self.quota_project.clone(),
            self.metadata_host.clone(),
        );
        if let Some(path) = &self.path {
            b = b.with_credentials_file(existing(path.clone())?);
        }
        if let Some(json) = &self.json {
            b = b.with_json(json.clone());
        }
        if let Some(enabled) = self.regional_access_boundary {
            b = b.with_regional_access_boundary(enabled);
        }
        if let Some(base) = &self.iam_credentials_endpoint {
            b = b.with_iam_credentials_endpoint(base.clone());
        }
        if let Some(mode) = &self.metadata_mtls_mode {
            b = b.with_metadata_mtls_mode(mode.parse::<MdsMtlsMode>().or_raise(py)?);
        }
        if let Some(dir) = &self.metadata_mtls_dir {
            b = b.with_metadata_mtls_dir(dir.clone());
        }
        // `from_service_account_file` and the like accept their one type only.
        let typed = self.factory.strip_prefix("from_").and_then(|rest| {
            rest.strip_suffix("_file")
                .or_else(|| rest.strip_suffix("_info"))
        });
        if let Some(name) = typed {
            let kind = name.parse::<CredentialType>().or_raise(py)?;
            b = b.with_allowed_types([kind]);
        }
        restrict(
            py,
            b,
            self.allowed_types.clone(),
            self.allowed_endpoints.clone(),
        )
    }

    fn build(self, py: Python<'_>) -> PyResult<Credentials> {
        self.build_within(py, None)
    }

    /// [`Recipe::build`], giving up after `timeout` (building may probe for the metadata server).
    fn build_within(self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Credentials> {
        let builder = self.builder(py)?;
        // Building reads files and may probe for the metadata server: let other threads run.
        let inner = match timeout {
            None => py.detach(|| builder.build()).or_raise(py)?,
            Some(_) => wait(py, timeout, async move {
                tokio::task::spawn_blocking(move || builder.build())
                    .await
                    .unwrap_or_else(|e| {
                        Err(workload_auth::Error::new(
                            workload_auth::ErrorKind::Io,
                            format!("building the credentials stopped: {e}"),
                        ))
                    })
            })?,
        };
        Ok(Credentials {
            inner,
            generation: crate::forks(),
            recipe: self,
            rebuilt: Mutex::new(None),
        })
    }
}

fn builder(
    scopes: Option<Vec<String>>,
    quota_project: Option<String>,
    metadata_host: Option<String>,
) -> CredentialsBuilder {
    let mut builder = CredentialsBuilder::new();
    if let Some(scopes) = scopes {
        builder = builder.with_scopes(scopes);
    }
    if let Some(project) = quota_project {
        builder = builder.with_quota_project(project);
    }
    if let Some(host) = metadata_host {
        builder = builder.with_metadata_host(host);
    }
    builder
}

/// `path`, when a file is there; `CredentialsFileNotFoundError` (a `FileNotFoundError`, as
/// `open()` raises, and a `CredentialsNotFoundError`) when nothing is.
fn existing(path: PathBuf) -> PyResult<PathBuf> {
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Python::attach(|py| {
            let shown = path.display().to_string();
            let class = py
                .import("workload_auth._errors")?
                .getattr("CredentialsFileNotFoundError")?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("filename", &shown)?;
            let message = format!("the credentials file {shown} does not exist");
            Err(PyErr::from_value(class.call((message,), Some(&kwargs))?))
        }),
        _ => Ok(path),
    }
}

/// Applies `allowed_types` (credential type names) and `allowed_endpoints` (extra token hosts)
/// to `builder`.
fn restrict(
    py: Python<'_>,
    mut builder: CredentialsBuilder,
    allowed_types: Option<Vec<String>>,
    allowed_endpoints: Option<Vec<String>>,
) -> PyResult<CredentialsBuilder> {
    if let Some(names) = allowed_types {
        let types = names
            .iter()
            .map(|name| name.parse::<CredentialType>())
            .collect::<Result<Vec<_>, _>>()
            .or_raise(py)?;
        builder = builder.with_allowed_types(types);
    }
    if let Some(hosts) = allowed_endpoints {
        builder = builder.with_allowed_endpoints(hosts);
    }
    Ok(builder)
}

/// The JSON text of `info`: a `str` as is, a `dict` serialized.
fn json_text(py: Python<'_>, info: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = info.cast::<PyString>() {
        Ok(text.to_cow()?.into_owned())
    } else if info.cast::<PyDict>().is_ok() {
        py.import("json")?.call_method1("dumps", (info,))?.extract()
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "info must be the JSON text (str) or a dict of a credentials file",
        ))
    }
}

/// `default(*, scopes=None, quota_project=None, metadata_host=None, allowed_types=None,
/// allowed_endpoints=None, regional_access_boundary=None, iam_credentials_endpoint=None,
/// timeout=None, metadata_mtls_mode=None, metadata_mtls_dir=None)`: Application Default
/// Credentials from the environment.
#[pyfunction]
#[pyo3(signature = (
    *, scopes=None, quota_project=None, metadata_host=None, allowed_types=None,
    allowed_endpoints=None, regional_access_boundary=None, iam_credentials_endpoint=None,
    timeout=None, metadata_mtls_mode=None, metadata_mtls_dir=None
))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(crate) fn default(
    py: Python<'_>,
    scopes: Option<&Bound<'_, PyAny>>,
    quota_project: Option<String>,
    metadata_host: Option<String>,
    allowed_types: Option<Vec<String>>,
    allowed_endpoints: Option<Vec<String>>,
    regional_access_boundary: Option<bool>,
    iam_credentials_endpoint: Option<String>,
    timeout: Option<f64>,
    metadata_mtls_mode: Option<String>,
    metadata_mtls_dir: Option<PathBuf>,
) -> PyResult<Credentials> {
    let timeout = deadline(py, timeout)?;
    Recipe {
        factory: "default".to_owned(),
        scopes: scope_list(scopes)?,
        quota_project,
        metadata_host,
        metadata_mtls_mode,
        metadata_mtls_dir,
        allowed_types,
        allowed_endpoints,
        regional_access_boundary,
        iam_credentials_endpoint,
        ..Recipe::default()
    }
    .build_within(py, timeout)
}

impl Credentials {
    /// The credentials of this process: `inner`, or after `fork()` credentials rebuilt from the
    /// recipe on the child's first call (the parent's hold connections and in-flight fetches of
    /// threads the child does not have).
    pub(crate) fn current(&self, py: Python<'_>) -> PyResult<workload_auth::Credentials> {
        let generation = crate::forks();
        if generation == self.generation {
            return Ok(self.inner.clone());
        }
        let mut rebuilt = self.rebuilt.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_in, credentials)) = rebuilt.as_ref()
            && *built_in == generation
        {
            return Ok(credentials.clone());
        }
        let fresh = self.recipe.clone().build(py)?.inner;
        *rebuilt = Some((generation, fresh.clone()));
        Ok(fresh)
    }

    /// An access token for `scopes` (`None`: the credentials' own), within `timeout`.
    fn fetch(
        &self,
        py: Python<'_>,
        scopes: Option<Vec<String>>,
        timeout: Option<Duration>,
    ) -> PyResult<RustAccessToken> {
        let credentials = self.current(py)?;
        wait(py, timeout, async move {
            match scopes {
                None => credentials.access_token().await,
                Some(scopes) => {
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    credentials.access_token_with_scopes(&refs).await
                }
            }
        })
    }
}

/// `slf.method(*args, timeout=timeout)` in the running event loop's executor, as an awaitable
/// (`workload_auth._aio`). `timeout` is checked here, before anything is scheduled.
fn in_thread<'py>(
    slf: &Bound<'py, Credentials>,
    method: &str,
    args: Bound<'py, PyTuple>,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    deadline(py, timeout)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("timeout", timeout)?;
    py.import("workload_auth._aio")?
        .getattr("in_thread")?
        .call1((slf.getattr(method)?, args, kwargs))
}

/// `timeout` in seconds as a deadline: finite and positive, else `ValueError`
/// (`InvalidArgumentError`); `None` waits as long as the library's own timeouts allow.
pub(crate) fn deadline(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    let Some(seconds) = timeout else {
        return Ok(None);
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(invalid_argument(
            py,
            format!("timeout must be a finite number of seconds above 0, not {seconds}"),
        ));
    }
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(|_| invalid_argument(py, format!("timeout {seconds} is out of range")))
}

/// Runs `future` on the library's runtime with the GIL released, giving up after `timeout`
/// (`DeadlineExceededError`). The work itself goes on in the background and fills the cache.
pub(crate) fn wait<T, F>(py: Python<'_>, timeout: Option<Duration>, future: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = workload_auth::Result<T>> + Send + 'static,
{
    let outcome = py.detach(move || {
        runtime::block_on(async move {
            match timeout {
                None => Some(future.await),
                Some(limit) => tokio::time::timeout(limit, future).await.ok(),
            }
        })
    });
    match outcome {
        Ok(Some(result)) => result.or_raise(py),
        Ok(None) => Err(deadline_exceeded(py, timeout.unwrap_or_default())),
        Err(e) => Err(e).or_raise(py),
    }
}

#[pymethods]
impl Credentials {
    /// Credentials from a credentials file (any `type` ADC knows, or one of `allowed_types`),
    /// instead of searching.
    #[staticmethod]
    #[pyo3(signature = (
        path, *, scopes=None, quota_project=None, allowed_types=None, allowed_endpoints=None
    ))]
    fn from_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_types: Option<Vec<String>>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_file".to_owned(),
            path: Some(existing(path)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_types,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from the JSON of a credentials file (a `str`, or a mapping).
    #[staticmethod]
    #[pyo3(signature = (
        info, *, scopes=None, quota_project=None, allowed_types=None, allowed_endpoints=None
    ))]
    fn from_json(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_types: Option<Vec<String>>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_json".to_owned(),
            json: Some(json_text(py, info)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_types,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    // The typed loaders from here on (`from_<type>_info`, `from_<type>_file`) are deliberately
    // written out one by one rather than generated: each needs its own docstring and keyword
    // signature for `help()` and for the stubs in `_native.pyi`, which pyright checks; the work is
    // shared in `Recipe::build`, and what differs is the factory name.

    /// Credentials from the JSON (`str` or `dict`) of a `service_account` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_service_account_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_service_account_info".to_owned(),
            json: Some(json_text(py, info)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from a `service_account` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_service_account_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_service_account_file".to_owned(),
            path: Some(existing(path)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `authorized_user` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_authorized_user_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_authorized_user_info".to_owned(),
            json: Some(json_text(py, info)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from a `authorized_user` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_authorized_user_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_authorized_user_file".to_owned(),
            path: Some(existing(path)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `impersonated_service_account` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_impersonated_service_account_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_impersonated_service_account_info".to_owned(),
            json: Some(json_text(py, info)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from a `impersonated_service_account` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_impersonated_service_account_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_impersonated_service_account_file".to_owned(),
            path: Some(existing(path)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `external_account` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_external_account_info".to_owned(),
            json: Some(json_text(py, info)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from a `external_account` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_external_account_file".to_owned(),
            path: Some(existing(path)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `external_account_authorized_user` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_authorized_user_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_external_account_authorized_user_info".to_owned(),
            json: Some(json_text(py, info)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// Credentials from a `external_account_authorized_user` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_authorized_user_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<&Bound<'_, PyAny>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        Recipe {
            factory: "from_external_account_authorized_user_file".to_owned(),
            path: Some(existing(path)?),
            scopes: scope_list(scopes)?,
            quota_project,
            allowed_endpoints,
            ..Recipe::default()
        }
        .build(py)
    }

    /// An access token: from the cache when it holds a fresh one, otherwise fetched (the GIL
    /// is released while waiting; concurrent callers share one fetch). `timeout`: seconds.
    #[pyo3(signature = (scopes=None, *, timeout=None))]
    fn token(
        &self,
        py: Python<'_>,
        scopes: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let timeout = deadline(py, timeout)?;
        let scopes = scope_list(scopes)?;
        if scopes.is_none() && timeout.is_none() {
            // The default scopes: copy the cached token once, straight into the result (the hot
            // path: no copy of the credentials unless this is a forked child).
            let rebuilt;
            let inner = if crate::forks() == self.generation {
                &self.inner
            } else {
                rebuilt = self.current(py)?;
                &rebuilt
            };
            return py
                .detach(|| {
                    inner
                        .access_token_cached_blocking()
                        .map(|token| token.secret().expose().to_owned())
                })
                .or_raise(py);
        }
        let token = self.fetch(py, scopes, timeout)?;
        Ok(token.secret().expose().to_owned())
    }

    /// The access token with its type and expiry.
    #[pyo3(signature = (scopes=None, *, timeout=None))]
    fn access_token(
        &self,
        py: Python<'_>,
        scopes: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<AccessToken> {
        let timeout = deadline(py, timeout)?;
        let scopes = scope_list(scopes)?;
        if scopes.is_none() && timeout.is_none() {
            // The default scopes: straight from the cache, without a hop to the runtime.
            let inner = self.current(py)?;
            let token = py
                .detach(|| inner.access_token_cached_blocking())
                .or_raise(py)?;
            return Ok(AccessToken::of(&token));
        }
        let token = self.fetch(py, scopes, timeout)?;
        Ok(AccessToken::of(&token))
    }

    /// Whether tokens are bound to an Agent Identity workload certificate: then `token()` and
    /// `access_token()` raise `InvalidArgumentError`, and `bound_access_token()` returns the token
    /// together with its certificate.
    #[getter]
    fn is_bound(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.current(py)?.is_bound())
    }

    /// A token bound to the Agent Identity workload certificate, with that certificate.
    #[pyo3(signature = (scopes=None, *, timeout=None))]
    fn bound_access_token(
        &self,
        py: Python<'_>,
        scopes: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<BoundAccessToken> {
        let timeout = deadline(py, timeout)?;
        let scopes = scope_list(scopes)?;
        let credentials = self.current(py)?;
        let bound = wait(py, timeout, async move {
            match scopes {
                None => credentials.bound_access_token().await,
                Some(scopes) => {
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    credentials.bound_access_token_with_scopes(&refs).await
                }
            }
        })?;
        Ok(BoundAccessToken::of(&bound))
    }

    /// An OpenID Connect ID token whose `aud` is `audience`.
    #[pyo3(signature = (audience, *, timeout=None))]
    fn id_token(&self, py: Python<'_>, audience: String, timeout: Option<f64>) -> PyResult<String> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        wait(py, timeout, async move {
            credentials
                .id_token(&audience)
                .await
                .map(|token| token.secret().expose().to_owned())
        })
    }

    /// The headers a request to a Google API needs: `authorization`,
    /// `x-goog-user-project` when there is a quota project, and `x-allowed-locations` when
    /// regional access boundaries are enabled and known (never for a `url` on a regional
    /// endpoint or the IAM and STS hosts).
    #[pyo3(signature = (*, url=None, timeout=None))]
    fn headers<'py>(
        &self,
        py: Python<'py>,
        url: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        let all = wait(py, timeout, async move {
            match url {
                Some(url) => credentials.request_headers_for(&url).await,
                None => credentials.request_headers().await,
            }
        })?;
        let headers = PyDict::new(py);
        for (name, value) in all.iter() {
            headers.set_item(name, value)?;
        }
        Ok(headers)
    }

    /// The `x-allowed-locations` value for a request to `url` (`None`: any Google API), or
    /// `None` when none is to be sent (disabled, not yet known, failing, unrestricted, or a
    /// regional, IAM or STS `url`). Never waits for the boundary lookup.
    #[pyo3(signature = (url=None, *, timeout=None))]
    fn allowed_locations(
        &self,
        py: Python<'_>,
        url: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Option<String>> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        let headers = wait(py, timeout, async move {
            match url {
                Some(url) => credentials.request_headers_for(&url).await,
                None => credentials.request_headers().await,
            }
        })?;
        Ok(headers.allowed_locations().map(str::to_owned))
    }

    /// The state of the regional access boundary, as text: `disabled`, `pending ...`,
    /// `x-allowed-locations: ...`, `no restriction ...`, `lookup failing ...`.
    #[getter]
    fn regional_access_boundary(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.current(py)?.regional_access_boundary().to_string())
    }

    /// Why these credentials: every place looked at, the credential type, where the project id
    /// and quota project come from.
    fn explain(&self, py: Python<'_>) -> PyResult<Explanation> {
        let inner = self.current(py)?;
        Ok(Explanation {
            inner: py.detach(|| inner.explain_blocking()),
        })
    }

    /// The project id, or `None` when nothing knows it (may ask the metadata server once).
    #[pyo3(signature = (*, timeout=None))]
    fn project_id(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<String>> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        wait(py, timeout, async move { credentials.project_id().await })
    }

    /// The universe domain (`googleapis.com` unless the credentials say otherwise).
    #[pyo3(signature = (*, timeout=None))]
    fn universe_domain(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<String> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        wait(
            py,
            timeout,
            async move { credentials.universe_domain().await },
        )
    }

    /// The quota project sent as `x-goog-user-project`, if any.
    #[getter]
    fn quota_project_id(&self) -> Option<String> {
        self.inner.quota_project_id().map(str::to_owned)
    }

    /// `metadata_server`, `service_account`, `authorized_user`, ...
    #[getter]
    fn credential_type(&self) -> &'static str {
        self.inner.credential_type().as_str()
    }

    /// The email of the service account these credentials act as (a key's `client_email`, an
    /// impersonation target, the metadata server's attached account), or `None` for user and
    /// federated credentials.
    #[pyo3(signature = (*, timeout=None))]
    fn service_account_email(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<String>> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        wait(py, timeout, async move {
            credentials.service_account_email().await
        })
    }

    /// Signs `message` with a service-account key, locally: `(key_id, signature)` (RS256 or
    /// ES256 raw signature). Credentials without a key raise `InvalidArgumentError`.
    fn sign_bytes<'py>(
        &self,
        py: Python<'py>,
        message: &[u8],
    ) -> PyResult<(Option<String>, Bound<'py, pyo3::types::PyBytes>)> {
        let (key_id, signature) = self.current(py)?.sign_bytes(message).or_raise(py)?;
        Ok((key_id, pyo3::types::PyBytes::new(py, &signature)))
    }

    /// Signs `message` as the service account these credentials act as: locally with a
    /// service-account key, otherwise through the IAM Credentials API's `signBlob` (at
    /// `iam_endpoint`, a base URL like `https://iamcredentials.googleapis.com/v1/`, default the
    /// universe's) with these credentials' access token: `(key_id, signature)`. User and
    /// federated credentials raise `InvalidArgumentError`. Blocks; releases the GIL.
    #[pyo3(signature = (message, *, iam_endpoint=None, timeout=None))]
    fn sign_blob<'py>(
        &self,
        py: Python<'py>,
        message: &[u8],
        iam_endpoint: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<(Option<String>, Bound<'py, pyo3::types::PyBytes>)> {
        let timeout = deadline(py, timeout)?;
        let credentials = self.current(py)?;
        let message = message.to_vec();
        let (key_id, signature) = wait(py, timeout, async move {
            match iam_endpoint {
                Some(endpoint) => {
                    credentials
                        .sign_blob_with_endpoint(&message, &endpoint)
                        .await
                }
                None => credentials.sign_blob(&message).await,
            }
        })?;
        Ok((key_id, pyo3::types::PyBytes::new(py, &signature)))
    }

    /// `await token_async(...)`: `token()` run in the event loop's executor, so the loop never
    /// blocks; the same cache. Needs a running event loop.
    #[pyo3(signature = (scopes=None, *, timeout=None))]
    fn token_async<'py>(
        slf: &Bound<'py, Self>,
        scopes: Option<Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let scopes = scope_list(scopes.as_ref())?;
        in_thread(slf, "token", (scopes,).into_pyobject(py)?, timeout)
    }

    /// `await id_token_async(audience)`: `id_token()` without blocking the event loop.
    #[pyo3(signature = (audience, *, timeout=None))]
    fn id_token_async<'py>(
        slf: &Bound<'py, Self>,
        audience: String,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = (audience,).into_pyobject(slf.py())?;
        in_thread(slf, "id_token", args, timeout)
    }

    /// `await request_headers_async()`: `headers()` without blocking the event loop.
    #[pyo3(signature = (*, timeout=None))]
    fn request_headers_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        in_thread(slf, "headers", PyTuple::empty(slf.py()), timeout)
    }

    /// Forgets every cached token; the next call fetches anew.
    fn invalidate(&self, py: Python<'_>) -> PyResult<()> {
        self.current(py)?.invalidate();
        Ok(())
    }

    /// Pickles the recipe (a file path, or `default` and its arguments), never a token or a key:
    /// unpickling builds the credentials anew from their source. Credentials built from JSON in
    /// memory may hold a key, so they refuse to be pickled (`TypeError`).
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Reduced<'py>> {
        let recipe = &self.recipe;
        if recipe.json.is_some() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "credentials made by {}() from JSON in memory are not picklable (the JSON may \
                 hold a key); pickle credentials loaded from a file path or default() instead",
                recipe.factory
            )));
        }
        let state = PyDict::new(py);
        state.set_item("version", env!("CARGO_PKG_VERSION"))?;
        state.set_item("factory", &recipe.factory)?;
        state.set_item("path", &recipe.path)?;
        state.set_item("scopes", &recipe.scopes)?;
        state.set_item("quota_project", &recipe.quota_project)?;
        state.set_item("metadata_host", &recipe.metadata_host)?;
        state.set_item("metadata_mtls_mode", &recipe.metadata_mtls_mode)?;
        state.set_item("metadata_mtls_dir", &recipe.metadata_mtls_dir)?;
        state.set_item("allowed_types", &recipe.allowed_types)?;
        state.set_item("allowed_endpoints", &recipe.allowed_endpoints)?;
        state.set_item("regional_access_boundary", recipe.regional_access_boundary)?;
        state.set_item("iam_credentials_endpoint", &recipe.iam_credentials_endpoint)?;
        let restore = py
            .import("workload_auth._pickle")?
            .getattr("restore_credentials")?;
        Ok((restore, (PICKLE_FORMAT, state)))
    }

    /// Rebuilds pickled credentials from their recipe (`workload_auth._pickle`).
    #[staticmethod]
    fn _from_pickle(
        py: Python<'_>,
        format: &Bound<'_, PyAny>,
        state: &Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        let version = state
            .get_item("version")?
            .map(|v| v.str().map(|s| s.to_string()))
            .transpose()?
            .unwrap_or_else(|| "unknown".to_owned());
        if format.extract::<u32>().ok() != Some(PICKLE_FORMAT) {
            return Err(invalid_argument(
                py,
                format!(
                    "this pickle of workload_auth.Credentials is in format {} (from workload-auth \
                     {version}); workload-auth {} reads format {PICKLE_FORMAT} only: build the \
                     credentials again instead of unpickling them",
                    format
                        .repr()
                        .map_or_else(|_| "?".to_owned(), |r| r.to_string()),
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        let get = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            Ok(state.get_item(key)?.filter(|v| !v.is_none()))
        };
        let factory: String = match get("factory")? {
            Some(v) => v.extract()?,
            None => return Err(invalid_argument(py, "the pickle has no factory")),
        };
        let known = factory == "default"
            || factory == "from_file"
            || (factory.starts_with("from_") && factory.ends_with("_file"));
        if !known {
            return Err(invalid_argument(
                py,
                format!("the pickle names an unknown factory {factory:?}"),
            ));
        }
        Recipe {
            factory,
            path: get("path")?.map(|v| v.extract()).transpose()?,
            json: None,
            scopes: get("scopes")?.map(|v| v.extract()).transpose()?,
            quota_project: get("quota_project")?.map(|v| v.extract()).transpose()?,
            metadata_host: get("metadata_host")?.map(|v| v.extract()).transpose()?,
            metadata_mtls_mode: get("metadata_mtls_mode")?
                .map(|v| v.extract())
                .transpose()?,
            metadata_mtls_dir: get("metadata_mtls_dir")?.map(|v| v.extract()).transpose()?,
            allowed_types: get("allowed_types")?.map(|v| v.extract()).transpose()?,
            allowed_endpoints: get("allowed_endpoints")?.map(|v| v.extract()).transpose()?,
            regional_access_boundary: get("regional_access_boundary")?
                .map(|v| v.extract())
                .transpose()?,
            iam_credentials_endpoint: get("iam_credentials_endpoint")?
                .map(|v| v.extract())
                .transpose()?,
        }
        .build(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Credentials(credential_type={}, quota_project_id={})",
            py_repr(self.inner.credential_type().as_str()),
            py_repr_opt(self.inner.quota_project_id())
        )
    }
}

/// An access token, its type and expiry. `repr()` does not show the token.
#[pyclass(module = "workload_auth", frozen, get_all)]
pub(crate) struct AccessToken {
    /// The token itself (a secret: never log it).
    token: String,
    /// `Bearer`.
    token_type: String,
    /// When it expires, in seconds since the Unix epoch.
    expires_at: f64,
}

impl AccessToken {
    pub(crate) fn of(token: &RustAccessToken) -> Self {
        Self {
            token: token.secret().expose().to_owned(),
            token_type: token.token_type().to_owned(),
            expires_at: token
                .expires_at()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

#[pymethods]
impl AccessToken {
    /// Seconds until expiry (0 when expired).
    #[getter]
    fn expires_in(&self) -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        (self.expires_at - now).max(0.0)
    }

    fn __repr__(&self) -> String {
        format!(
            "AccessToken(token_type={}, expires_at={}, token=<redacted>)",
            py_repr(&self.token_type),
            self.expires_at
        )
    }
}

/// A certificate-bound access token and the certificate it is bound to. `repr()` hides the token.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct BoundAccessToken {
    /// The token itself (a secret: never log it).
    #[pyo3(get)]
    token: String,
    /// `Bearer`.
    #[pyo3(get)]
    token_type: String,
    /// When it expires, in seconds since the Unix epoch.
    #[pyo3(get)]
    expires_at: f64,
    /// The chain the token is bound to: PEM certificates, leaf first, no key.
    #[pyo3(get)]
    certificate_chain: String,
    /// The leaf's SHA-256, base64url without padding.
    #[pyo3(get)]
    fingerprint: String,
    /// The file the certificate was read from.
    #[pyo3(get)]
    certificate_file: String,
    /// The key, only through `private_key_pem()`.
    key_pem: Option<Py<pyo3::types::PyBytes>>,
}

impl BoundAccessToken {
    fn of(bound: &workload_auth::BoundAccessToken) -> Self {
        let token = AccessToken::of(bound.token());
        let certificate = bound.certificate();
        let key_pem = Python::attach(|py| {
            certificate
                .private_key_pem()
                .map(|pem| pyo3::types::PyBytes::new(py, pem.expose().as_bytes()).unbind())
        });
        Self {
            token: token.token,
            token_type: token.token_type,
            expires_at: token.expires_at,
            certificate_chain: certificate.chain_pem().to_owned(),
            fingerprint: certificate.fingerprint().to_owned(),
            certificate_file: certificate.path().display().to_string(),
            key_pem,
        }
    }
}

#[pymethods]
impl BoundAccessToken {
    /// The private key of the certificate as PEM bytes, for a transport that must present the
    /// certificate (`None` when no key sits next to it). A secret: never log it.
    fn private_key_pem<'py>(&self, py: Python<'py>) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        self.key_pem.as_ref().map(|k| k.bind(py).clone())
    }

    fn __repr__(&self) -> String {
        format!(
            "BoundAccessToken(fingerprint={}, expires_at={}, token=<redacted>)",
            py_repr(&self.fingerprint),
            self.expires_at
        )
    }
}

/// One place Application Default Credentials looked at.
#[pyclass(module = "workload_auth", frozen, get_all)]
pub(crate) struct ExplanationStep {
    /// What was looked at (`GOOGLE_APPLICATION_CREDENTIALS`, `metadata server`, ...).
    name: String,
    /// Where: a path or an address, when there is one.
    place: Option<String>,
    /// `chosen`, `not_found`, `failed` or `not_tried`.
    outcome: String,
    /// Why, in a sentence.
    detail: String,
}

#[pymethods]
impl ExplanationStep {
    fn __repr__(&self) -> String {
        format!(
            "ExplanationStep(name={}, place={}, outcome={}, detail={})",
            py_repr(&self.name),
            py_repr_opt(self.place.as_deref()),
            py_repr(&self.outcome),
            py_repr(&self.detail)
        )
    }
}

/// Why these credentials. `str()` is a report a person reads; `to_dict()` the same as data.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct Explanation {
    inner: workload_auth::Explanation,
}

fn steps(list: &[workload_auth::adc::Step]) -> Vec<ExplanationStep> {
    list.iter()
        .map(|s| ExplanationStep {
            name: s.name.clone(),
            place: s.place.clone(),
            outcome: serde_json::to_value(s.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| s.outcome.to_string()),
            detail: s.detail.clone(),
        })
        .collect()
}

#[pymethods]
impl Explanation {
    /// `metadata_server`, `service_account`, ...; `None` when nothing was found.
    #[getter]
    fn credential_type(&self) -> Option<&'static str> {
        self.inner.credential_type.map(|t| t.as_str())
    }

    /// Where the credentials came from (a file, or the metadata server's address).
    #[getter]
    fn credential_source(&self) -> Option<String> {
        self.inner.credential_source.clone()
    }

    /// The project id, when something knows it.
    #[getter]
    fn project_id(&self) -> Option<String> {
        self.inner.project_id.clone()
    }

    /// The quota project sent as `x-goog-user-project`, if any.
    #[getter]
    fn quota_project_id(&self) -> Option<String> {
        self.inner.quota_project_id.clone()
    }

    /// The universe domain, when known.
    #[getter]
    fn universe_domain(&self) -> Option<String> {
        self.inner.universe_domain.clone()
    }

    /// The regional access boundary: `disabled`, the allowed locations, or why there are none.
    #[getter]
    fn regional_access_boundary(&self) -> String {
        self.inner.regional_access_boundary.clone()
    }

    /// Whether tokens are certificate-bound, and to which certificate (its fingerprint).
    #[getter]
    fn token_binding(&self) -> String {
        self.inner.token_binding.to_string()
    }

    /// Why no credentials were found, when none were.
    #[getter]
    fn error(&self) -> Option<String> {
        self.inner.error.clone()
    }

    /// Each place looked at for credentials, in order.
    #[getter]
    fn steps(&self) -> Vec<ExplanationStep> {
        steps(&self.inner.steps)
    }

    /// Everything, as plain data (the JSON `workload-auth explain --json` prints).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.inner)
            .map_err(|e| invalid_argument(py, format!("cannot encode the explanation: {e}")))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Explanation(credential_type={}, project_id={})",
            py_repr_opt(self.credential_type()),
            py_repr_opt(self.inner.project_id.as_deref())
        )
    }
}
