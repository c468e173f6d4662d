//! Field checks shared by register and update; each error names its field.
use crate::error::RegistryError;
use crate::state::{ServiceTerms, MAX_NAME_LEN, MAX_UNIT_LEN, MAX_URI_LEN};

pub fn name(name: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(RegistryError::NameLength);
    }
    Ok(())
}

pub fn metadata_uri(uri: &str) -> Result<(), RegistryError> {
    if uri.len() > MAX_URI_LEN {
        return Err(RegistryError::MetadataUriLength);
    }
    Ok(())
}

/// An absolute http(s) URL, at most 200 bytes: clients connect to it.
pub fn gateway_url(url: &str) -> Result<(), RegistryError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && url.len() <= MAX_URI_LEN && !url.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(RegistryError::GatewayUrl),
    }
}

pub fn terms(t: &ServiceTerms) -> Result<(), RegistryError> {
    if t.price == 0 {
        return Err(RegistryError::ZeroPrice);
    }
    if t.unit.is_empty() || t.unit.len() > MAX_UNIT_LEN {
        return Err(RegistryError::UnitLength);
    }
    gateway_url(&t.gateway_url)?;
    metadata_uri(&t.metadata_uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_url_must_be_absolute_http() {
        assert!(gateway_url("https://api.example.com/v1").is_ok());
        assert!(gateway_url("http://127.0.0.1:8402").is_ok());
        for bad in ["", "https://", "ftp://x", "example.com", "https://a b"] {
            assert_eq!(gateway_url(bad), Err(RegistryError::GatewayUrl), "{bad:?}");
        }
        assert_eq!(gateway_url(&format!("https://{}", "a".repeat(200))), Err(RegistryError::GatewayUrl));
    }

    #[test]
    fn name_bounds() {
        assert!(name("a").is_ok());
        assert!(name(&"a".repeat(32)).is_ok());
        assert_eq!(name(""), Err(RegistryError::NameLength));
        assert_eq!(name(&"a".repeat(33)), Err(RegistryError::NameLength));
    }

    #[test]
    fn terms_checks_each_field() {
        let ok = ServiceTerms {
            price: 1,
            asset: Default::default(),
            unit: "call".into(),
            gateway_url: "https://g.example".into(),
            metadata_uri: String::new(),
        };
        assert!(terms(&ok).is_ok());
        assert_eq!(terms(&ServiceTerms { price: 0, ..ok.clone() }), Err(RegistryError::ZeroPrice));
        assert_eq!(terms(&ServiceTerms { unit: String::new(), ..ok.clone() }), Err(RegistryError::UnitLength));
        assert_eq!(terms(&ServiceTerms { unit: "u".repeat(17), ..ok.clone() }), Err(RegistryError::UnitLength));
        assert_eq!(
            terms(&ServiceTerms { metadata_uri: "m".repeat(201), ..ok.clone() }),
            Err(RegistryError::MetadataUriLength)
        );
        assert_eq!(terms(&ServiceTerms { gateway_url: "nope".into(), ..ok }), Err(RegistryError::GatewayUrl));
    }
}
