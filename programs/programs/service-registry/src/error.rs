use anchor_lang::prelude::*;

#[error_code]
#[derive(PartialEq, Eq)]
pub enum RegistryError {
    #[msg("name must be 1..=32 bytes")]
    NameLength,
    #[msg("metadata_uri must be at most 200 bytes")]
    MetadataUriLength,
    #[msg("gateway_url must be an absolute http(s) URL of at most 200 bytes, without whitespace")]
    GatewayUrl,
    #[msg("unit must be 1..=16 bytes")]
    UnitLength,
    #[msg("price must be greater than zero")]
    ZeroPrice,
    #[msg("the vendor is deactivated")]
    VendorInactive,
    #[msg("only the vendor authority may do this")]
    Unauthorized,
    #[msg("service_count overflow")]
    Overflow,
}
