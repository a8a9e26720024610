//! Which public keys berth serves, and how a client certificate's subject is
//! written for `X-Client-Cert-Subject`.

use rustls_pki_types::CertificateDer;
use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

const MIN_RSA_BITS: usize = 2048;

/// RSA 2048+, ECDSA P-256/P-384 and Ed25519 pass; the error completes
/// "certificate for NAME …".
pub(crate) fn check_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), String> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => 0,
        };
        return match bits >= MIN_RSA_BITS {
            true => Ok(()),
            false => Err(format!(
                "has a {bits}-bit RSA key; {MIN_RSA_BITS} bits or more are required"
            )),
        };
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().map(|p| p.as_oid());
        return match curve {
            Some(Ok(c)) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(Ok(c)) if c == OID_NIST_EC_P521 => {
                Err("has an ECDSA P-521 key; P-256 or P-384 are supported".into())
            }
            Some(Ok(c)) => Err(format!(
                "has an ECDSA key on curve {c}; P-256 or P-384 are supported"
            )),
            _ => Err("has an ECDSA key without a named curve".into()),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(());
    }
    Err(format!(
        "has a key of type {algorithm}; supported are RSA {MIN_RSA_BITS}+, \
         ECDSA P-256/P-384 and Ed25519"
    ))
}

/// Bits of a big-endian unsigned integer, leading zero bytes ignored.
fn modulus_bits(modulus: &[u8]) -> usize {
    let mut digits = modulus.iter().skip_while(|&&b| b == 0);
    match digits.next() {
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * digits.count(),
        None => 0,
    }
}

/// The subject of a (verified) client certificate as an RFC 4514 string,
/// most specific first: `CN=alice,O=Example,C=FR`. Control characters are
/// escaped, so the result is safe in a header value.
pub fn client_subject(peer_certs: &[CertificateDer<'_>]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(peer_certs.first()?.as_ref()).ok()?;
    let mut out = String::new();
    let rdns: Vec<_> = cert.subject().iter_rdn().collect();
    for rdn in rdns.iter().rev() {
        if !out.is_empty() {
            out.push(',');
        }
        for (i, attr) in rdn.iter().enumerate() {
            if i > 0 {
                out.push('+');
            }
            match oid2abbrev(attr.attr_type(), oid_registry()) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            escape_value(attr.as_str().unwrap_or("?"), &mut out);
        }
    }
    Some(out)
}

fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (c == '#' && i == 0)
            || edge_space
        {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::modulus_bits;

    #[test]
    fn modulus_bits_counts_significant_bits() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0x7f, 0]), 15);
        assert_eq!(modulus_bits(&[0, 0, 1]), 1);
    }
}
