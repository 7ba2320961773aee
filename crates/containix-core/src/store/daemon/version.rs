//! Worker protocol versions: `major << 8 | minor` on the wire, negotiated as the minimum of both
//! sides.

use std::fmt;

/// A worker protocol version such as 1.34.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    /// Major version; only 1 exists.
    pub major: u8,
    /// Minor version; every version-dependent field is gated on it.
    pub minor: u8,
}

impl ProtocolVersion {
    /// The version this client advertises: 1.38, with an empty feature list.
    pub const CLIENT: Self = Self::new(1, 38);
    /// The oldest daemon version accepted (Nix 2.3 speaks 1.21).
    pub const MIN_SUPPORTED: Self = Self::new(1, 21);

    /// A version from its parts.
    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }

    /// Decodes the wire form `major << 8 | minor`; `None` if it does not fit.
    pub fn from_wire(value: u64) -> Option<Self> {
        let value = u16::try_from(value).ok()?;
        let [major, minor] = value.to_be_bytes();
        Some(Self { major, minor })
    }

    /// The wire form `major << 8 | minor`.
    pub fn to_wire(self) -> u64 {
        u64::from(self.major) << 8 | u64::from(self.minor)
    }

    /// Whether this version is 1.`minor` or newer.
    pub fn at_least(self, minor: u8) -> bool {
        self >= Self::new(1, minor)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_and_order() {
        assert_eq!(ProtocolVersion::CLIENT.to_wire(), 0x126);
        assert_eq!(
            ProtocolVersion::from_wire(0x122),
            Some(ProtocolVersion::new(1, 34))
        );
        assert_eq!(ProtocolVersion::from_wire(1 << 20), None);
        assert!(ProtocolVersion::new(1, 35).at_least(35));
        assert!(!ProtocolVersion::new(1, 34).at_least(35));
        assert!(ProtocolVersion::new(2, 0) > ProtocolVersion::new(1, 99));
        assert_eq!(ProtocolVersion::new(1, 37).to_string(), "1.37");
    }
}
