//! Platforms (`os/arch[/variant]`) and choosing one from an index.

use std::fmt;

use crate::error::Error;

/// A platform to pull, normalized: `arm64` means `arm64/v8`, `arm` means `arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || Error::InvalidReference {
            text: text.to_owned(),
            reason: "a platform is os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8".into(),
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Self::new(parts[0], parts[1], parts.get(2).copied()))
    }

    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let architecture = match architecture {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        let variant = variant.map(str::to_owned).or(match architecture {
            "arm64" => Some("v8".to_owned()),
            "arm" => Some("v7".to_owned()),
            _ => None,
        });
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// The platform of this machine, as Go names it.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self::new("linux", arch, None)
    }

    /// Whether an index entry's platform is this one (a missing arm64 variant is v8).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        *self == Self::new(os, architecture, variant)
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_means_arm64_v8() {
        let p = PlatformSpec::parse("linux/arm64").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", None));
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "amd64", None));
        assert!(PlatformSpec::parse("linux").is_err());
        assert!(PlatformSpec::parse("linux//v8").is_err());
    }
}
