import Foundation
import WaakvlamCore
import WaakvlamTransport

/// Why a certificate that passed TLS verification (right CA, valid, not revoked) still gets
/// no access: it must also belong to a configured organisation.
public enum IdentityRefusal: Error, Equatable, Sendable {
    /// The certificate has no subject serialNumber, so it names no OIN.
    case noOIN
    /// No configured organisation has this OIN.
    case unknownOrganisation(oin: String)
    /// The OIN is known, but the certificate's public key is not one of the organisation's pins.
    case keyNotPinned(organisationID: String, pin: String)

    public var code: String {
        switch self {
        case .noOIN: "certificate_without_oin"
        case .unknownOrganisation: "unknown_organisation"
        case .keyNotPinned: "key_not_pinned"
        }
    }

    public var message: String {
        switch self {
        case .noOIN:
            "Your certificate has no subject serialNumber: use a certificate that carries your organisation's OIN there."
        case .unknownOrganisation(let oin):
            "Your certificate's OIN \(oin) (subject serialNumber) belongs to no organisation on this node: ask its administrator to add your organisation to organisations.json."
        case .keyNotPinned(let id, let pin):
            "Your certificate's public key \(pin) is not pinned for organisation '\(id)': ask the node's administrator to add this pin, or use the certificate whose key is pinned."
        }
    }

    /// 403 with the project's JSON error body.
    public var response: HTTPResponse {
        .error(status: 403, code: code, message: message)
    }
}

/// Maps a verified client certificate to an organisation, as in Dutch government practice
/// (Digikoppeling, FSC): the OIN in the subject serialNumber names the organisation, and the
/// certificate's public key must be one of that organisation's pins. Pinning the key (not
/// the certificate) lets a renewed certificate with the same key keep working. A
/// certificate that maps to no organisation never gets access.
public enum Identity {
    public static func organisation(for certificate: PeerCertificate, in configuration: Configuration) -> Result<Organisation, IdentityRefusal> {
        guard let oin = certificate.subjectSerialNumber, !oin.isEmpty else { return .failure(.noOIN) }
        guard let organisation = configuration.organisation(oin: oin) else {
            return .failure(.unknownOrganisation(oin: oin))
        }
        guard organisation.pins.contains(certificate.publicKeyPin) else {
            return .failure(.keyNotPinned(organisationID: organisation.id, pin: certificate.publicKeyPin))
        }
        return .success(organisation)
    }
}
