//! Where Application Default Credentials reads environment variables and the home directory.
//!
//! The process environment is global and tests run in parallel threads, so every lookup goes
//! through an [`EnvSource`]: the real process by default, or a fixed set of variables and a home
//! directory that a test (or an embedding program) passes in.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// `GOOGLE_APPLICATION_CREDENTIALS`: the path of a credentials file.
pub const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// `CLOUDSDK_CONFIG`: gcloud's configuration directory.
pub const CLOUDSDK_CONFIG_ENV: &str = "CLOUDSDK_CONFIG";
/// `GOOGLE_CLOUD_PROJECT`: the project id, first choice.
pub const PROJECT_ENV: &str = "GOOGLE_CLOUD_PROJECT";
/// `GCLOUD_PROJECT`: the project id, legacy second choice.
pub const LEGACY_PROJECT_ENV: &str = "GCLOUD_PROJECT";
/// `GOOGLE_CLOUD_QUOTA_PROJECT`: the project billed for quota.
pub const QUOTA_PROJECT_ENV: &str = "GOOGLE_CLOUD_QUOTA_PROJECT";
/// `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES`: must be `1` for executable-sourced credentials.
pub const ALLOW_EXECUTABLES_ENV: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
/// `GOOGLE_API_CERTIFICATE_CONFIG`: the path of `certificate_config.json`.
pub const CERTIFICATE_CONFIG_ENV: &str = "GOOGLE_API_CERTIFICATE_CONFIG";
/// `WORKLOAD_AUTH_ALLOWED_ENDPOINTS`: extra hosts a credentials file may send credentials to,
/// comma-separated (`token.corp.example`, `*.corp.example`), for private deployments. See
/// [`Builder::with_allowed_endpoints`](crate::Builder::with_allowed_endpoints) for the rules.
pub const ALLOWED_ENDPOINTS_ENV: &str = "WORKLOAD_AUTH_ALLOWED_ENDPOINTS";

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The environment variables and home directory ADC reads.
///
/// ```
/// use workload_auth_adc::EnvSource;
/// let env = EnvSource::from_vars([("GOOGLE_CLOUD_PROJECT", "my-project")]).with_home("/tmp/home");
/// assert_eq!(env.var("GOOGLE_CLOUD_PROJECT").as_deref(), Some("my-project"));
/// assert_eq!(env.var("HOME"), None);
/// ```
#[derive(Clone)]
pub struct EnvSource {
    lookup: Lookup,
    home: Option<PathBuf>,
    windows: bool,
    children: ChildEnv,
}

/// The environment an executable credential source is started with.
#[derive(Clone, Debug)]
pub(crate) enum ChildEnv {
    /// The process's own environment, with these variables added or replaced.
    Inherit(Arc<HashMap<String, String>>),
    /// Exactly these variables.
    Exactly(Arc<HashMap<String, String>>),
}

impl EnvSource {
    /// The real process environment; the home directory is `$HOME` (`%USERPROFILE%` on Windows).
    pub fn process() -> Self {
        Self {
            lookup: Arc::new(|name| std::env::var(name).ok()),
            home: None,
            windows: cfg!(windows),
            children: ChildEnv::Inherit(Arc::default()),
        }
    }

    /// Exactly `vars`, nothing from the process. The home directory is the `HOME` among them, if
    /// any, unless [`EnvSource::with_home`] sets one. (Alike `DetectionInput::with_env_vars` by
    /// design: the same `vars` can be given to both, and detection keeps no `EnvSource`.)
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let map = Arc::new(map);
        let lookup_map = Arc::clone(&map);
        Self {
            lookup: Arc::new(move |name| lookup_map.get(name).cloned()),
            home: None,
            windows: cfg!(windows),
            children: ChildEnv::Exactly(map),
        }
    }

    /// The same variables plus (or replacing) `name=value`.
    #[must_use]
    pub fn with_var(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let previous = Arc::clone(&self.lookup);
        let key = name.clone();
        let val = value.clone();
        let children = match self.children {
            ChildEnv::Inherit(vars) => {
                let mut vars = HashMap::clone(&vars);
                vars.insert(name, value);
                ChildEnv::Inherit(Arc::new(vars))
            }
            ChildEnv::Exactly(vars) => {
                let mut vars = HashMap::clone(&vars);
                vars.insert(name, value);
                ChildEnv::Exactly(Arc::new(vars))
            }
        };
        Self {
            lookup: Arc::new(move |n| {
                if n == key {
                    Some(val.clone())
                } else {
                    previous(n)
                }
            }),
            children,
            ..self
        }
    }

    /// Uses `dir` as the home directory (for `~/.config/gcloud`).
    #[must_use]
    pub fn with_home(mut self, dir: impl Into<PathBuf>) -> Self {
        self.home = Some(dir.into());
        self
    }

    /// The value of `name`, if set (possibly empty).
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// The value of `name` if set and not blank.
    pub fn nonempty(&self, name: &str) -> Option<String> {
        self.var(name).filter(|v| !v.trim().is_empty())
    }

    /// The home directory, if known.
    pub fn home_dir(&self) -> Option<PathBuf> {
        if let Some(home) = &self.home {
            return Some(home.clone());
        }
        let name = if self.windows { "USERPROFILE" } else { "HOME" };
        self.nonempty(name).map(PathBuf::from)
    }

    /// gcloud's configuration directory: `$CLOUDSDK_CONFIG`, else `~/.config/gcloud`
    /// (`%APPDATA%\gcloud` on Windows). `None` when neither a variable nor a home is known.
    pub fn gcloud_config_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = self.nonempty(CLOUDSDK_CONFIG_ENV) {
            return Some(PathBuf::from(dir));
        }
        if self.windows
            && let Some(appdata) = self.nonempty("APPDATA")
        {
            return Some(PathBuf::from(appdata).join("gcloud"));
        }
        self.home_dir().map(|h| h.join(".config").join("gcloud"))
    }

    /// The environment a child process (an executable credential source) starts with: the
    /// process's own (plus [`EnvSource::with_var`] additions) for [`EnvSource::process`], exactly
    /// the given variables for [`EnvSource::from_vars`].
    pub(crate) fn child_env(&self) -> &ChildEnv {
        &self.children
    }
}

impl Default for EnvSource {
    fn default() -> Self {
        Self::process()
    }
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvSource")
            .field(
                "source",
                &match self.children {
                    ChildEnv::Exactly(_) => "given variables",
                    ChildEnv::Inherit(_) => "process",
                },
            )
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_vars_hide_the_process() {
        let env = EnvSource::from_vars([("A", "1"), ("B", "")]);
        assert_eq!(env.var("A").as_deref(), Some("1"));
        assert_eq!(env.var("B").as_deref(), Some(""));
        assert_eq!(env.nonempty("B"), None);
        assert_eq!(env.var("PATH"), None);
        let env = env.with_var("A", "2").with_var("C", "3");
        assert_eq!(env.var("A").as_deref(), Some("2"));
        assert_eq!(env.var("C").as_deref(), Some("3"));
        let ChildEnv::Exactly(vars) = env.child_env() else {
            panic!("given variables must not inherit the process environment")
        };
        assert_eq!(vars.get("C").map(String::as_str), Some("3"));
    }

    #[test]
    fn gcloud_dir_prefers_cloudsdk_config() {
        let env = EnvSource::from_vars([("HOME", "/h")]);
        assert_eq!(
            env.gcloud_config_dir(),
            Some(PathBuf::from("/h/.config/gcloud"))
        );
        let env = env.with_var(CLOUDSDK_CONFIG_ENV, "/c");
        assert_eq!(env.gcloud_config_dir(), Some(PathBuf::from("/c")));
        let env = EnvSource::from_vars([(CLOUDSDK_CONFIG_ENV, " ")]).with_home("/x");
        assert_eq!(
            env.gcloud_config_dir(),
            Some(PathBuf::from("/x/.config/gcloud"))
        );
        assert_eq!(
            EnvSource::from_vars::<&str, &str>([]).gcloud_config_dir(),
            None
        );
    }
}
