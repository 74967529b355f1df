//! `AccessBoundary`, `AccessBoundaryRule` and `DownscopedCredentials`: credential access
//! boundaries (downscoped tokens) for Python.

use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use workload_auth::adc::downscoped::PreparedBoundary;
use workload_auth::{
    AccessBoundary as RustBoundary, AccessBoundaryRule as RustRule, AvailabilityCondition,
    ClientSideDownscoper, DownscopedCredentials as RustDownscoped,
};

use crate::credentials::{AccessToken, Credentials, deadline, wait};
use crate::errors::{IntoPy, py_repr};

/// Longest access boundary JSON accepted.
const MAX_BOUNDARY_JSON: usize = 64 * 1024;

/// One rule of an access boundary: a resource, the roles available on it (`inRole:ROLE`), and
/// optionally a CEL condition narrowing it to some of the resource's objects.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct AccessBoundaryRule {
    inner: RustRule,
}

#[pymethods]
impl AccessBoundaryRule {
    #[new]
    #[pyo3(signature = (
        available_resource, available_permissions, *, expression=None, title=None,
        description=None
    ))]
    fn new(
        available_resource: String,
        available_permissions: Vec<String>,
        expression: Option<String>,
        title: Option<String>,
        description: Option<String>,
    ) -> PyResult<Self> {
        let mut rule = RustRule::new(available_resource, available_permissions);
        match expression {
            Some(expression) => {
                rule = rule.with_condition(AvailabilityCondition {
                    expression,
                    title,
                    description,
                });
            }
            None if title.is_some() || description.is_some() => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "title and description describe a condition: give its expression too",
                ));
            }
            None => {}
        }
        Ok(Self { inner: rule })
    }

    /// The full resource name (`//storage.googleapis.com/projects/_/buckets/NAME`).
    #[getter]
    fn available_resource(&self) -> &str {
        &self.inner.available_resource
    }

    /// The roles available on the resource, each `inRole:ROLE`.
    #[getter]
    fn available_permissions(&self) -> Vec<String> {
        self.inner.available_permissions.clone()
    }

    /// The condition's CEL expression, if any.
    #[getter]
    fn expression(&self) -> Option<&str> {
        self.condition().map(|c| c.expression.as_str())
    }

    /// The condition's title, if any.
    #[getter]
    fn title(&self) -> Option<&str> {
        self.condition().and_then(|c| c.title.as_deref())
    }

    /// The condition's description, if any.
    #[getter]
    fn description(&self) -> Option<&str> {
        self.condition().and_then(|c| c.description.as_deref())
    }

    fn __repr__(&self) -> String {
        format!(
            "AccessBoundaryRule(available_resource={}, available_permissions=[{}], \
             expression={})",
            py_repr(&self.inner.available_resource),
            self.inner
                .available_permissions
                .iter()
                .map(|p| py_repr(p))
                .collect::<Vec<_>>()
                .join(", "),
            self.expression().map_or_else(|| "None".to_owned(), py_repr)
        )
    }
}

impl AccessBoundaryRule {
    fn condition(&self) -> Option<&AvailabilityCondition> {
        self.inner.availability_condition.as_ref()
    }
}

/// A credential access boundary: 1 to 10 rules, checked when made (`InvalidArgumentError`, a
/// `ValueError`, naming the rule and the field).
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct AccessBoundary {
    inner: RustBoundary,
}

#[pymethods]
impl AccessBoundary {
    #[new]
    fn new(py: Python<'_>, rules: Vec<Bound<'_, AccessBoundaryRule>>) -> PyResult<Self> {
        let rules = rules.iter().map(|r| r.get().inner.clone()).collect();
        Ok(Self {
            inner: RustBoundary::new(rules).or_raise(py)?,
        })
    }

    /// A boundary from JSON in the Security Token Service's form
    /// (`{"accessBoundary": {"accessBoundaryRules": [...]}}`, or the inner object): the text
    /// (`str` or `bytes`) or a `dict`.
    #[staticmethod]
    fn from_json(py: Python<'_>, json: &Bound<'_, PyAny>) -> PyResult<Self> {
        let text: Vec<u8> = if let Ok(s) = json.cast::<PyString>() {
            s.to_cow()?.as_bytes().to_vec()
        } else if let Ok(b) = json.cast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else if json.cast::<PyDict>().is_ok() {
            let dumped: String = py
                .import("json")?
                .call_method1("dumps", (json,))?
                .extract()?;
            dumped.into_bytes()
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "json must be the JSON text (str or bytes) or a dict",
            ));
        };
        if text.len() > MAX_BOUNDARY_JSON {
            return Err(crate::errors::invalid_argument(
                py,
                format!("the access boundary JSON is longer than {MAX_BOUNDARY_JSON} bytes"),
            ));
        }
        Ok(Self {
            inner: RustBoundary::from_json(&text).or_raise(py)?,
        })
    }

    /// The rules.
    #[getter]
    fn rules(&self) -> Vec<AccessBoundaryRule> {
        self.inner
            .rules()
            .iter()
            .map(|r| AccessBoundaryRule { inner: r.clone() })
            .collect()
    }

    /// `{"accessBoundary": {"accessBoundaryRules": [...]}}` as JSON text: the Security Token
    /// Service's `options` for a server-side downscoped token.
    fn to_json(&self) -> String {
        self.inner.to_json().to_string()
    }

    fn __len__(&self) -> usize {
        self.inner.rules().len()
    }

    fn __repr__(&self) -> String {
        format!("AccessBoundary(rules={})", self.inner.rules().len())
    }
}

/// How the tokens are made, rebuilt after `fork()`.
#[derive(Clone)]
enum Made {
    ServerSide(RustDownscoped),
    ClientSide(ClientSideDownscoper, PreparedBoundary),
}

/// Downscoped credentials: tokens limited to an access boundary, from source credentials.
#[pyclass(module = "workload_auth", frozen)]
pub(crate) struct DownscopedCredentials {
    source: Py<Credentials>,
    boundary: RustBoundary,
    client_side: bool,
    sts_endpoint: Option<String>,
    /// What makes the tokens, and the fork generation it was built in.
    made: Mutex<(u64, Made)>,
}

fn make(
    py: Python<'_>,
    source: &Credentials,
    boundary: &RustBoundary,
    client_side: bool,
    sts_endpoint: Option<&str>,
) -> PyResult<Made> {
    let mut builder = RustDownscoped::builder(source.current(py)?);
    if let Some(url) = sts_endpoint {
        builder = builder.with_sts_endpoint(url);
    }
    if client_side {
        let downscoper = builder.build_client_side().or_raise(py)?;
        let prepared = downscoper.prepare(boundary).or_raise(py)?;
        Ok(Made::ClientSide(downscoper, prepared))
    } else {
        Ok(Made::ServerSide(
            builder.build(boundary.clone()).or_raise(py)?,
        ))
    }
}

impl DownscopedCredentials {
    fn current(&self, py: Python<'_>) -> PyResult<Made> {
        let generation = crate::forks();
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if made.0 != generation {
            let source = self.source.get();
            let fresh = make(
                py,
                source,
                &self.boundary,
                self.client_side,
                self.sts_endpoint.as_deref(),
            )?;
            *made = (generation, fresh);
        }
        Ok(made.1.clone())
    }

    fn fetch(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<workload_auth::AccessToken> {
        let timeout = deadline(py, timeout)?;
        match self.current(py)? {
            Made::ServerSide(credentials) => {
                wait(py, timeout, async move { credentials.access_token().await })
            }
            Made::ClientSide(downscoper, prepared) => {
                wait(
                    py,
                    timeout,
                    async move { downscoper.token(&prepared).await },
                )
            }
        }
    }
}

#[pymethods]
impl DownscopedCredentials {
    #[new]
    #[pyo3(signature = (source, boundary, *, client_side=false, sts_endpoint=None))]
    fn new(
        py: Python<'_>,
        source: Py<Credentials>,
        boundary: &AccessBoundary,
        client_side: bool,
        sts_endpoint: Option<String>,
    ) -> PyResult<Self> {
        let made = make(
            py,
            source.get(),
            &boundary.inner,
            client_side,
            sts_endpoint.as_deref(),
        )?;
        Ok(Self {
            source,
            boundary: boundary.inner.clone(),
            client_side,
            sts_endpoint,
            made: Mutex::new((crate::forks(), made)),
        })
    }

    /// A downscoped access token (the token string).
    #[pyo3(signature = (*, timeout=None))]
    fn token(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<String> {
        Ok(self.fetch(py, timeout)?.secret().expose().to_owned())
    }

    /// A downscoped access token with its type and expiry.
    #[pyo3(signature = (*, timeout=None))]
    fn access_token(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<AccessToken> {
        Ok(AccessToken::of(&self.fetch(py, timeout)?))
    }

    /// `{"authorization": "Bearer <downscoped token>"}`.
    #[pyo3(signature = (*, timeout=None))]
    fn headers<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let token = self.fetch(py, timeout)?;
        let headers = PyDict::new(py);
        headers.set_item("authorization", token.authorization_header().expose())?;
        Ok(headers)
    }

    /// The boundary the tokens are limited to.
    #[getter]
    fn boundary(&self) -> AccessBoundary {
        AccessBoundary {
            inner: self.boundary.clone(),
        }
    }

    /// Whether tokens are minted locally (client-side) rather than exchanged one by one.
    #[getter]
    fn client_side(&self) -> bool {
        self.client_side
    }

    /// How many Security Token Service exchanges were started (intermediary tokens client-side).
    #[getter]
    fn exchange_count(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(match self.current(py)? {
            Made::ServerSide(credentials) => credentials.exchange_count(),
            Made::ClientSide(downscoper, _) => downscoper.exchange_count(),
        })
    }

    /// Forgets the cached token (server-side) or intermediary token (client-side).
    fn invalidate(&self, py: Python<'_>) -> PyResult<()> {
        match self.current(py)? {
            Made::ServerSide(credentials) => credentials.invalidate(),
            Made::ClientSide(downscoper, _) => downscoper.invalidate(),
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "DownscopedCredentials(client_side={}, rules={})",
            if self.client_side { "True" } else { "False" },
            self.boundary.rules().len()
        )
    }
}
