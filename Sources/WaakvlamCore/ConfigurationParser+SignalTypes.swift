import Foundation

extension ParseSession {
    static let fieldKeys = ["name", "description", "category", "format", "values", "required", "maxLength"]

    func readSignalTypes(_ root: Located) {
        guard let elements = ConfigValues.list(root, issues: issues) else { return }
        signalTypesReadable = true
        for element in elements {
            guard let reader = ObjectReader(element, what: "a signal type",
                                            keys: ["id", "description", "fields", "person", "address", "routing", "preconditions", "feedback"],
                                            issues: issues) else { continue }
            let id = reader.string("id", required: "a short name such as \"overlast\"")
            if let id, !ParseSession.isValidIdentifier(id) {
                issues.error(reader.location(of: "id"), "'\(id)' is not a valid id: use lowercase letters, digits and single hyphens")
            }
            let description = reader.string("description", required: "a sentence saying what this signal is for") ?? ""
            let fieldElements = reader.list("fields", required: "the list of fields a payload of this type may hold")
            if fieldElements?.isEmpty == true {
                issues.error(reader.location(of: "fields"), "a signal type needs at least one field; list them")
            }
            let fields = readFields(fieldElements ?? [], owner: id ?? "this type", broken: { self.unreadableFields.insert("\(id ?? "").\($0)") })
            var type = SignalType(id: id ?? "", description: description, fields: fields)
            if let person = reader.object("person", what: "the fields that identify the person", keys: ["bsn", "surname", "birthDate", "postcode"]) {
                type.person = PersonFields(bsn: fieldReference(person, "bsn", in: type, formats: ["bsn"]),
                                           surname: fieldReference(person, "surname", in: type, formats: ["text"]),
                                           birthDate: fieldReference(person, "birthDate", in: type, formats: ["date"]),
                                           postcode: fieldReference(person, "postcode", in: type, formats: ["postcode"]))
                if type.person?.bsn == nil, person.has("surname") != person.has("birthDate") || person.has("surname") != person.has("postcode") {
                    issues.error(person.location, "a person is identified by bsn, or by surname, birthDate and postcode together; name all three or none")
                }
            }
            if let address = reader.object("address", what: "the fields that hold the address", keys: ["postcode", "houseNumber", "houseNumberAddition"]) {
                let postcode = fieldReference(address, "postcode", in: type, formats: ["postcode"], required: true)
                let number = fieldReference(address, "houseNumber", in: type, formats: ["integer", "text"], required: true)
                let addition = fieldReference(address, "houseNumberAddition", in: type, formats: ["text"])
                if let postcode, let number { type.address = AddressFields(postcode: postcode, houseNumber: number, houseNumberAddition: addition) }
            }
            if reader.has("routing") {
                type.routingField = fieldReference(reader, "routing", in: type, formats: ["postcode"])
            }
            for (name, location) in reader.strings("preconditions") ?? [] {
                guard let kind = PreconditionKind(rawValue: name) else {
                    let names = PreconditionKind.allCases.map(\.rawValue)
                    issues.error(location, "unknown precondition '\(name)'\(hint(name, names)): known are \(names.joined(separator: ", "))")
                    continue
                }
                let missing = VroegEropaf.missingFields(in: type)
                if kind == .vroegEropaf, !missing.isEmpty {
                    issues.error(location, "the vroegEropaf precondition is attested with fields this type lacks: add \(missing.joined(separator: ", "))")
                }
                type.requiredPreconditions.append(kind)
            }
            if let feedback = reader.object("feedback", what: "what a recipient may answer", keys: ["statuses", "fields"]) {
                type.feedback = FeedbackCatalogue(statuses: (feedback.strings("statuses") ?? []).map(\.0),
                                                  fields: readFields(feedback.list("fields") ?? [], owner: "the feedback of \(id ?? "this type")", broken: { _ in }))
            }
            guard let id else { continue }
            if signalTypeIndex[id] != nil {
                issues.error(reader.location(of: "id"), "the signal type '\(id)' is defined twice; ids must be unique")
                continue
            }
            signalTypeIndex[id] = signalTypes.count
            signalTypes.append(type)
        }
    }

    /// The well-formed field definitions; `broken` is told the names of the others.
    private func readFields(_ elements: [Located], owner: String, broken: (String) -> Void) -> [FieldDefinition] {
        var fields: [FieldDefinition] = []
        for element in elements {
            guard let reader = ObjectReader(element, what: "a field", keys: ParseSession.fieldKeys, issues: issues) else { continue }
            let name = reader.string("name", required: "the field name used in payloads, e.g. \"Postcode\"")
            if let name, !(name.first!.isLetter && name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })) {
                issues.error(reader.location(of: "name"), "'\(name)' is not a valid field name: use ASCII letters, digits and '_', starting with a letter")
            }
            let category = readCategory(reader.value("category"), missing: {
                reader.missing("category", "one of \(DataCategory.allCases.map(\.rawValue).joined(separator: ", "))")
            })
            let format = readFormat(reader)
            let required = reader.bool("required", default: false)
            let maxLength = reader.integer("maxLength", minimum: 1, maximum: 1_000_000)
            if maxLength != nil, let format, ![FieldFormat.text, .phone, .email].contains(format) {
                issues.error(reader.location(of: "maxLength"), "maxLength applies to text, phone and email fields; a \(format.name) field has a fixed form: remove maxLength")
            }
            guard let name else { continue }
            guard let category, let format else {
                broken(name)
                continue
            }
            if fields.contains(where: { $0.name == name }) {
                issues.error(reader.location(of: "name"), "the field '\(name)' is defined twice in \(owner); field names must be unique")
                continue
            }
            fields.append(FieldDefinition(name: name, description: reader.string("description") ?? "", category: category, format: format,
                                          required: required, maxLength: maxLength))
        }
        return fields
    }

    func readCategory(_ located: Located?, missing: () -> Void) -> DataCategory? {
        guard let located else { missing(); return nil }
        guard let text = ConfigValues.string(located, issues: issues) else { return nil }
        guard let category = DataCategory(rawValue: text) else {
            let names = DataCategory.allCases.map(\.rawValue)
            issues.error(located.location, "unknown data category '\(text)'\(hint(text, names)): use one of \(names.joined(separator: ", "))")
            return nil
        }
        return category
    }

    private func readFormat(_ reader: ObjectReader) -> FieldFormat? {
        guard let name = reader.string("format", required: "one of \(FieldFormat.names.joined(separator: ", "))") else { return nil }
        let values = reader.strings("values")
        if name != "enum", values != nil {
            issues.error(reader.location(of: "values"), "only an enum field has values; remove 'values' or set format to \"enum\"")
        }
        switch name {
        case "text": return .text
        case "postcode": return .postcode
        case "date": return .date
        case "amount": return .amount
        case "bsn": return .bsn
        case "boolean": return .boolean
        case "integer": return .integer
        case "phone": return .phone
        case "email": return .email
        case "enum":
            guard let values else {
                reader.missing("values", "an enum field lists its allowed values, e.g. values: [\"geluid\", \"stank\"]")
                return nil
            }
            if values.isEmpty {
                issues.error(reader.location(of: "values"), "an enum field needs at least one value")
            }
            return .enumeration(values.map(\.0))
        default:
            issues.error(reader.location(of: "format"), "unknown format '\(name)'\(hint(name, FieldFormat.names)): use one of \(FieldFormat.names.joined(separator: ", "))")
            return nil
        }
    }

    /// A reference (by name) to one of the type's own fields, of one of `formats`.
    private func fieldReference(_ reader: ObjectReader, _ key: String, in type: SignalType, formats: [String], required: Bool = false) -> String? {
        guard let name = reader.string(key, required: required ? "the name of the field that holds it" : nil) else { return nil }
        guard let field = type.field(named: name) else {
            issues.error(reader.location(of: key), "'\(name)' is not a field of this type\(hint(name, type.fields.map(\.name))); name one of its fields")
            return nil
        }
        guard formats.contains(field.format.name) else {
            issues.error(reader.location(of: key), "the field '\(name)' has format \(field.format.name), but \(key) needs a \(formats.joined(separator: " or ")) field")
            return nil
        }
        return name
    }
}
