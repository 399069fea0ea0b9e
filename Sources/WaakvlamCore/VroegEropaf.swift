import Foundation

/// The Vroeg Eropaf precondition (Besluit gemeentelijke schuldhulpverlening, Stb. 2020, 240,
/// art. 2): a landlord may send a tenant's contact details and the arrears to the gemeente
/// only after (a) trying personal contact, (b) pointing to debt help, (c) at least one written
/// reminder, (d) offering in that reminder to pass the details on, which the tenant did not
/// refuse; and only from the arrears threshold the rule sets (VNG: 30 days for rent).
///
/// The sender attests these in the payload with the field names below, so a signal type that
/// carries this precondition must define them.
public enum VroegEropaf {
    public static let arrearsStartField = "ontstaansdatum"
    public static let reminderDateField = "herinneringsdatum"
    public static let objectionField = "bezwaarGemaakt"

    /// One attested step of art. 2, the field that attests it and what it means.
    public struct Attestation: Sendable {
        public let letter: String
        public let field: String
        public let meaning: String
    }

    public static let attestations: [Attestation] = [
        Attestation(letter: "a", field: "persoonlijkContactGeprobeerd", meaning: "the landlord tried to contact the tenant in person"),
        Attestation(letter: "b", field: "gewezenOpSchuldhulp", meaning: "the landlord pointed the tenant to debt help"),
        Attestation(letter: "c", field: "schriftelijkeHerinneringVerstuurd", meaning: "the landlord sent at least one written reminder"),
        Attestation(letter: "d", field: "aanbodGegevensDoorgeven", meaning: "the reminder offered to pass the tenant's contact details to the gemeente"),
    ]

    /// The fields (and their formats) a signal type needs for this precondition.
    static var requiredFields: [(name: String, format: String)] {
        [(arrearsStartField, "date"), (reminderDateField, "date"), (objectionField, "boolean")]
            + attestations.map { ($0.field, "boolean") }
    }

    /// Names of the fields `type` lacks (or defines with another format) for this precondition.
    static func missingFields(in type: SignalType) -> [String] {
        requiredFields.compactMap { required in
            type.field(named: required.name)?.format.name == required.format ? nil : "\(required.name) (\(required.format))"
        }
    }
}
