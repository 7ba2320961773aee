//! What containix writes **about** a closure rather than from it: the empty OCI image that a
//! pod spec's `image` field names ([`oci_image`]), and the CycloneDX SBOM of a closure
//! ([`sbom`]).

pub mod oci_image;
pub mod sbom;
