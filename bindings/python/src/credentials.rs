//! `Credentials`, `AccessToken` and `Explanation`.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use workload_auth::core::runtime;
use workload_auth::{AccessToken as RustAccessToken, CredentialType, CredentialsBuilder};

use crate::errors::{IntoPy, invalid_argument};

/// Application Default Credentials and their token caches. Thread-safe; share one.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct Credentials {
    inner: workload_auth::Credentials,
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

fn build(py: Python<'_>, builder: CredentialsBuilder) -> PyResult<Credentials> {
    // Building reads files and may probe for the metadata server: let other threads run.
    let inner = py.detach(|| builder.build()).or_raise(py)?;
    Ok(Credentials { inner })
}

/// `default(*, scopes=None, quota_project=None, metadata_host=None, allowed_types=None,
/// allowed_endpoints=None)`: Application Default Credentials from the environment.
#[pyfunction]
#[pyo3(signature = (
    *, scopes=None, quota_project=None, metadata_host=None, allowed_types=None,
    allowed_endpoints=None
))]
pub(crate) fn default(
    py: Python<'_>,
    scopes: Option<Vec<String>>,
    quota_project: Option<String>,
    metadata_host: Option<String>,
    allowed_types: Option<Vec<String>>,
    allowed_endpoints: Option<Vec<String>>,
) -> PyResult<Credentials> {
    let builder = restrict(
        py,
        builder(scopes, quota_project, metadata_host),
        allowed_types,
        allowed_endpoints,
    )?;
    build(py, builder)
}

impl Credentials {
    fn fetch(&self, py: Python<'_>, scopes: Option<Vec<String>>) -> PyResult<RustAccessToken> {
        let inner = &self.inner;
        py.detach(|| match scopes {
            None => inner.access_token_blocking(),
            Some(scopes) => {
                let credentials = inner.clone();
                runtime::block_on(async move {
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    credentials.access_token_with_scopes(&refs).await
                })
                .and_then(|r| r)
            }
        })
        .or_raise(py)
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
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_types: Option<Vec<String>>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None).with_credentials_file(path);
        build(py, restrict(py, builder, allowed_types, allowed_endpoints)?)
    }

    /// Credentials from the JSON of a credentials file (a `str`, or a mapping).
    #[staticmethod]
    #[pyo3(signature = (
        info, *, scopes=None, quota_project=None, allowed_types=None, allowed_endpoints=None
    ))]
    fn from_json(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_types: Option<Vec<String>>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None).with_json(json_text(py, info)?);
        build(py, restrict(py, builder, allowed_types, allowed_endpoints)?)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `service_account` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_service_account_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_json(json_text(py, info)?)
            .with_allowed_types([CredentialType::ServiceAccount]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from a `service_account` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_service_account_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ServiceAccount]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `authorized_user` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_authorized_user_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_json(json_text(py, info)?)
            .with_allowed_types([CredentialType::AuthorizedUser]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from a `authorized_user` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_authorized_user_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::AuthorizedUser]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `impersonated_service_account` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_impersonated_service_account_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_json(json_text(py, info)?)
            .with_allowed_types([CredentialType::ImpersonatedServiceAccount]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from a `impersonated_service_account` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_impersonated_service_account_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ImpersonatedServiceAccount]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `external_account` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_json(json_text(py, info)?)
            .with_allowed_types([CredentialType::ExternalAccount]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from a `external_account` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ExternalAccount]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from the JSON (`str` or `dict`) of a `external_account_authorized_user` file; any other type is
    /// refused (`InvalidCredentialsError`) before anything in it is used.
    #[staticmethod]
    #[pyo3(signature = (info, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_authorized_user_info(
        py: Python<'_>,
        info: &Bound<'_, PyAny>,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_json(json_text(py, info)?)
            .with_allowed_types([CredentialType::ExternalAccountAuthorizedUser]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// Credentials from a `external_account_authorized_user` file; any other type is refused.
    #[staticmethod]
    #[pyo3(signature = (path, *, scopes=None, quota_project=None, allowed_endpoints=None))]
    fn from_external_account_authorized_user_file(
        py: Python<'_>,
        path: PathBuf,
        scopes: Option<Vec<String>>,
        quota_project: Option<String>,
        allowed_endpoints: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let builder = builder(scopes, quota_project, None)
            .with_credentials_file(path)
            .with_allowed_types([CredentialType::ExternalAccountAuthorizedUser]);
        build(py, restrict(py, builder, None, allowed_endpoints)?)
    }

    /// An access token: from the cache when it holds a fresh one, otherwise fetched (the GIL
    /// is released while waiting; concurrent callers share one fetch).
    #[pyo3(signature = (scopes=None))]
    fn token(&self, py: Python<'_>, scopes: Option<Vec<String>>) -> PyResult<String> {
        if scopes.is_none() {
            // The default scopes: copy the cached token once, straight into the result.
            let inner = &self.inner;
            return py
                .detach(|| {
                    inner
                        .access_token_cached_blocking()
                        .map(|token| token.secret().expose().to_owned())
                })
                .or_raise(py);
        }
        let token = self.fetch(py, scopes)?;
        Ok(token.secret().expose().to_owned())
    }

    /// The access token with its type and expiry.
    #[pyo3(signature = (scopes=None))]
    fn access_token(&self, py: Python<'_>, scopes: Option<Vec<String>>) -> PyResult<AccessToken> {
        let token = self.fetch(py, scopes)?;
        Ok(AccessToken {
            token: token.secret().expose().to_owned(),
            token_type: token.token_type().to_owned(),
            expires_at: token
                .expires_at()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        })
    }

    /// An OpenID Connect ID token whose `aud` is `audience`.
    fn id_token(&self, py: Python<'_>, audience: &str) -> PyResult<String> {
        let inner = &self.inner;
        let token = py
            .detach(|| inner.id_token_blocking(audience))
            .or_raise(py)?;
        Ok(token.secret().expose().to_owned())
    }

    /// The headers a request to a Google API needs: `authorization`,
    /// `x-goog-user-project` when there is a quota project, and `x-allowed-locations` when
    /// regional access boundaries are enabled and known.
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = &self.inner;
        let all = py
            .detach(|| inner.request_headers_blocking())
            .or_raise(py)?;
        let headers = PyDict::new(py);
        for (name, value) in all.iter() {
            headers.set_item(name, value)?;
        }
        Ok(headers)
    }

    /// Why these credentials: every place looked at, the credential type, where the project id
    /// and quota project come from.
    fn explain(&self, py: Python<'_>) -> Explanation {
        let inner = &self.inner;
        Explanation {
            inner: py.detach(|| inner.explain_blocking()),
        }
    }

    /// The project id, or `None` when nothing knows it (may ask the metadata server once).
    fn project_id(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let credentials = self.inner.clone();
        py.detach(|| runtime::block_on(async move { credentials.project_id().await }))
            .and_then(|r| r)
            .or_raise(py)
    }

    /// The universe domain (`googleapis.com` unless the credentials say otherwise).
    fn universe_domain(&self, py: Python<'_>) -> PyResult<String> {
        let credentials = self.inner.clone();
        py.detach(|| runtime::block_on(async move { credentials.universe_domain().await }))
            .and_then(|r| r)
            .or_raise(py)
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

    /// Forgets every cached token; the next call fetches anew.
    fn invalidate(&self) {
        self.inner.invalidate();
    }

    fn __repr__(&self) -> String {
        format!(
            "Credentials(credential_type={:?}, quota_project_id={:?})",
            self.inner.credential_type().as_str(),
            self.inner.quota_project_id()
        )
    }
}

/// An access token, its type and expiry. `repr()` does not show the token.
#[pyclass(module = "workload_auth", frozen, get_all)]
pub(crate) struct AccessToken {
    token: String,
    token_type: String,
    expires_at: f64,
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
            "AccessToken(token_type={:?}, expires_at={}, token=<redacted>)",
            self.token_type, self.expires_at
        )
    }
}

/// One place Application Default Credentials looked at.
#[pyclass(module = "workload_auth", frozen, get_all)]
pub(crate) struct ExplanationStep {
    name: String,
    place: Option<String>,
    outcome: String,
    detail: String,
}

#[pymethods]
impl ExplanationStep {
    fn __repr__(&self) -> String {
        format!(
            "ExplanationStep(name={:?}, place={:?}, outcome={:?}, detail={:?})",
            self.name, self.place, self.outcome, self.detail
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

    #[getter]
    fn project_id(&self) -> Option<String> {
        self.inner.project_id.clone()
    }

    #[getter]
    fn quota_project_id(&self) -> Option<String> {
        self.inner.quota_project_id.clone()
    }

    #[getter]
    fn universe_domain(&self) -> Option<String> {
        self.inner.universe_domain.clone()
    }

    /// The regional access boundary: `disabled`, the allowed locations, or why there are none.
    #[getter]
    fn regional_access_boundary(&self) -> String {
        self.inner.regional_access_boundary.clone()
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
            "Explanation(credential_type={:?}, project_id={:?})",
            self.credential_type(),
            self.inner.project_id
        )
    }
}
