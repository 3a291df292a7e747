//! The Privacy CA's side of TPM enrollment, in pure Rust: checking the endorsement key (EK)
//! certificate chain, and TPM2_MakeCredential for an RSA EK with the default EK template
//! (SHA-256 names, AES-128-CFB), as TPM 2.0 Library Part 1 ("Credential Protection") defines it:
//!
//! ```text
//! seed              random, 32 bytes
//! secret            RSA-OAEP(SHA-256, label "IDENTITY\0") of seed to the EK
//! symKey            KDFa(SHA-256, seed, "STORAGE", AK Name, "", 128)
//! encIdentity       AES-128-CFB(symKey, IV 0) of (u16 size || credential)
//! hmacKey           KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)
//! credential blob   u16 32 || HMAC-SHA256(hmacKey, encIdentity || AK Name) || encIdentity
//! ```
//!
//! Only a TPM that holds both that EK and a key with exactly that Name can recover the
//! credential (TPM2_ActivateCredential).

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::Sha256;
use x509_parser::prelude::*;

/// Why the CA refuses an endorsement key or cannot make a credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The EK certificate, the EK or the attestation key is not acceptable.
    #[error("enrollment refused: {0}")]
    Refused(String),
}

fn refused(s: impl Into<String>) -> CredentialError {
    CredentialError::Refused(s.into())
}

/// KDFa with HMAC-SHA-256 (TPM 2.0 Library Part 1, 11.4.10.2).
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 1u32;
    while out.len() * 8 < bits as usize {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key");
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bits as usize / 8);
    out
}

/// TPM2_MakeCredential for an RSA EK (modulus `ek_modulus`, exponent 65537) and the object
/// Name `ak_name`: returns (credential blob, encrypted secret).
pub fn make_credential(
    ek_modulus: &[u8],
    ak_name: &[u8],
    credential: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let ek = RsaPublicKey::new(BigUint::from_bytes_be(ek_modulus), BigUint::from(65537u32))
        .map_err(|e| refused(format!("the EK is not a usable RSA key: {e}")))?;
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let secret = ek
        .encrypt(
            &mut rand_core::OsRng,
            Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
            &seed,
        )
        .map_err(|e| refused(format!("encrypt the seed to the EK: {e}")))?;
    let sym = kdfa(&seed, "STORAGE", ak_name, &[], 128);
    let mut enc = (credential.len() as u16).to_be_bytes().to_vec();
    enc.extend_from_slice(credential);
    cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym, &[0u8; 16])
        .map_err(|e| refused(e.to_string()))?
        .encrypt(&mut enc);
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&hmac_key).expect("hmac takes any key");
    mac.update(&enc);
    mac.update(ak_name);
    let mut blob = 32u16.to_be_bytes().to_vec();
    blob.extend_from_slice(&mac.finalize().into_bytes());
    blob.extend_from_slice(&enc);
    Ok((blob, secret))
}

/// Verifies that `cert` was signed by `issuer` (RSA PKCS#1 v1.5 or ECDSA P-256, SHA-256).
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let tbs = cert.tbs_certificate.as_ref();
    let sig = &cert.signature_value.data;
    let spki = issuer.public_key().raw;
    let alg = cert.signature_algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.113549.1.1.11" => RsaPublicKey::from_public_key_der(spki)
            .ok()
            .and_then(|k| {
                let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k);
                let s = rsa::pkcs1v15::Signature::try_from(sig.as_ref()).ok()?;
                rsa::signature::Verifier::verify(&vk, tbs, &s).ok()
            })
            .is_some(),
        "1.2.840.10045.4.3.2" => {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&issuer.public_key().subject_public_key.data)
                .ok()
                .and_then(|k| {
                    let s = p256::ecdsa::Signature::from_der(sig).ok()?;
                    p256::ecdsa::signature::Verifier::verify(&k, tbs, &s).ok()
                })
                .is_some()
        }
        _ => false,
    }
}

/// Checks an EK certificate: issued (directly or through the listed intermediates) by one of
/// `roots` (PEM certificates the CA trusts as EK issuers), and holding `modulus`.
pub fn check_ek_certificate(
    ek_der: &[u8],
    modulus: &[u8],
    roots: &[String],
) -> Result<(), CredentialError> {
    let (_, ek) = X509Certificate::from_der(ek_der)
        .map_err(|e| refused(format!("the EK certificate does not parse: {e}")))?;
    let anchors: Vec<Vec<u8>> = roots
        .iter()
        .filter_map(|p| x509_parser::pem::parse_x509_pem(p.as_bytes()).ok())
        .map(|(_, pem)| pem.contents)
        .collect();
    let parsed: Vec<X509Certificate<'_>> = anchors
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    // Walk up from the EK certificate through the trusted set (at most a few links).
    let mut current = ek.clone();
    let mut chained = false;
    for _ in 0..4 {
        let Some(issuer) = parsed
            .iter()
            .find(|c| c.subject() == current.issuer() && signed_by(&current, c))
        else {
            break;
        };
        chained = true;
        if issuer.subject() == issuer.issuer() {
            break;
        }
        current = issuer.clone();
    }
    if !chained {
        return Err(refused(format!(
            "the EK certificate (issuer {}) does not chain to a trusted EK CA",
            ek.issuer()
        )));
    }
    let key = RsaPublicKey::from_public_key_der(ek.public_key().raw)
        .map_err(|_| refused("the EK certificate does not hold an RSA key"))?;
    if key.n().to_bytes_be() != modulus {
        return Err(refused(
            "the EK certificate is for another key than the EK presented",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_counts_bits_and_labels() {
        let a = kdfa(b"key", "STORAGE", b"name", b"", 128);
        assert_eq!(a.len(), 16);
        let b = kdfa(b"key", "STORAGE", b"name", b"", 256);
        assert_eq!(b.len(), 32);
        // The bit count is part of every block's input, so the 128-bit key is not a prefix.
        assert_ne!(a, b[..16]);
        assert_ne!(a, kdfa(b"key", "INTEGRITY", b"name", b"", 128));
    }
}
