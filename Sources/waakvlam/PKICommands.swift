import Foundation
import WaakvlamCore
import WaakvlamRelay
import WaakvlamTransport

// `waakvlam pki init`: a development PKI for a configuration folder.

private let pkiUsage = """
usage: waakvlam pki init --config DIR [--out DIR] [--force]

Creates what is missing in OUT (default: the folder of tls.ca in node.json):
  ca.pem, ca.key            a development CA (EC P-256)
  node.crt, node.key        the node's certificate (localhost, 127.0.0.1, ::1 and the peer host)
  <org>.crt, <org>.key      a certificate per organisation: subject serialNumber = OIN, O = name
  crl.pem                   an empty CRL of the CA (for tls.crl)
and writes the organisations' public-key pins to the pins file named by tls.pins.
Existing files are kept, so running it again is harmless; --force replaces the CA and
reissues everything.
"""

private func pkiError(_ text: String) {
    FileHandle.standardError.write(Data("waakvlam pki: \(text)\n".utf8))
}

func runPKICommand(_ arguments: [String]) -> Int32 {
    guard arguments.first == "init" else {
        pkiError("unknown or missing subcommand\n\n" + pkiUsage)
        return 2
    }
    var config: String?
    var out: String?
    var force = false
    var rest = Array(arguments.dropFirst())
    while !rest.isEmpty {
        let argument = rest.removeFirst()
        switch argument {
        case "--config" where !rest.isEmpty: config = rest.removeFirst()
        case "--out" where !rest.isEmpty: out = rest.removeFirst()
        case "--force": force = true
        default:
            pkiError("unexpected argument '\(argument)'\n\n" + pkiUsage)
            return 2
        }
    }
    guard let config else {
        pkiError("--config DIR is required\n\n" + pkiUsage)
        return 2
    }
    let result = ConfigLoading.load(directory: config)
    guard let configuration = result.configuration else {
        for issue in result.errors { print(issue.description) }
        pkiError("the configuration in \(config) has errors; fix them first (`waakvlam config check \(config)`)")
        return 1
    }
    do {
        try initialise(configuration, out: out ?? (configuration.node.tls.ca as NSString).deletingLastPathComponent, force: force)
        return 0
    } catch {
        pkiError("\(error)")
        return 1
    }
}

private func initialise(_ configuration: Configuration, out: String, force: Bool) throws {
    let files = FileManager.default
    try files.createDirectory(atPath: out, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
    func exists(_ name: String) -> Bool { files.fileExists(atPath: path(name)) }
    var created: [String] = []
    var kept: [String] = []

    let ca: DevelopmentCA
    if exists("ca.pem") && exists("ca.key") && !force {
        ca = try DevelopmentCA(certificateFile: path("ca.pem"), keyFile: path("ca.key"))
        kept.append("ca.pem")
    } else {
        ca = try DevelopmentCA.create(organisation: "Waakvlam development CA",
                                      commonName: "Waakvlam development CA (\(configuration.node.name))")
        try PEMFile.write(ca.key.pem, to: path("ca.key"), secret: true)
        try PEMFile.write(ca.certificatePEM, to: path("ca.pem"), secret: false)
        created.append("ca.pem")
    }
    let reissue = force || created.contains("ca.pem")

    /// Issues `name`.crt/.key unless both exist and nothing forces a new one.
    func certificate(_ name: String, _ spec: CertificateSpec) throws {
        if !reissue && exists("\(name).crt") && exists("\(name).key") {
            kept.append("\(name).crt")
            return
        }
        try ca.issue(spec).write(certificateTo: path("\(name).crt"), keyTo: path("\(name).key"))
        created.append("\(name).crt")
    }

    // Certificates name the CRL of this PKI, as PKIoverheid certificates name theirs.
    let crlURI = URL(fileURLWithPath: path("crl.pem")).standardizedFileURL.absoluteString

    // The node is a server for partners and a client when it delivers to them.
    let peer = configuration.node.listen.peer
    let peerIsAddress = Endpoint(host: peer.host, port: peer.port).hostIsIPAddress
    let wildcard = peer.host == "0.0.0.0" || peer.host == "::"
    let dnsNames = ["localhost"] + (!peerIsAddress && peer.host != "localhost" ? [peer.host] : [])
    let addresses = ["127.0.0.1", "::1"] + (peerIsAddress && !wildcard && !["127.0.0.1", "::1"].contains(peer.host) ? [peer.host] : [])
    let operatorOrganisation = configuration.organisation(id: configuration.node.operatorID)
    try certificate("node", CertificateSpec(commonName: configuration.node.name, organisation: operatorOrganisation?.name,
                                            subjectSerialNumber: operatorOrganisation?.oin, dnsNames: dnsNames,
                                            ipAddresses: addresses, usage: .clientAndServer, crlDistributionPoint: crlURI))
    for organisation in configuration.organisations {
        try certificate(organisation.id, CertificateSpec(commonName: "\(organisation.id) (development)", organisation: organisation.name,
                                                         subjectSerialNumber: organisation.oin, dnsNames: ["localhost"],
                                                         ipAddresses: ["127.0.0.1", "::1"], usage: .clientAndServer,
                                                         crlDistributionPoint: crlURI))
    }
    if reissue || !exists("crl.pem") {
        try PEMFile.write(try ca.revocationList(revoking: []), to: path("crl.pem"), secret: false)
        created.append("crl.pem")
    }

    // The pins of the certificates now in OUT, so a re-run never leaves a stale pin.
    var pins: [String: [String]] = [:]
    for organisation in configuration.organisations {
        pins[organisation.id] = [try PeerCertificate(pemFile: path("\(organisation.id).crt")).publicKeyPin]
    }
    let pinsPath = configuration.node.tls.pins ?? path("pins.json")
    try files.createDirectory(atPath: (pinsPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let pinsJSON = try JSONSerialization.data(withJSONObject: pins, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try PEMFile.write(String(decoding: pinsJSON, as: UTF8.self) + "\n", to: pinsPath, secret: false)

    print("development PKI in \(out)")
    if !created.isEmpty { print("  created: \(created.joined(separator: ", "))") }
    if !kept.isEmpty { print("  kept:    \(kept.joined(separator: ", ")) (pass --force to replace the CA and reissue everything)") }
    print("  pins:    \(pinsPath)\(configuration.node.tls.pins == nil ? " (set tls.pins in node.json to this file)" : "")")
    let tls = configuration.node.tls
    for (setting, file) in [("tls.ca", tls.ca), ("tls.certificate", tls.certificate), ("tls.key", tls.key)] {
        let expected = path(["tls.ca": "ca.pem", "tls.certificate": "node.crt", "tls.key": "node.key"][setting]!)
        if URL(fileURLWithPath: file).standardizedFileURL.path != URL(fileURLWithPath: expected).standardizedFileURL.path {
            print("  note:    node.json's \(setting) is \(file), not \(expected); point it there to use this PKI")
        }
    }
    if let example = configuration.organisations.first {
        let host = wildcard ? "localhost" : (peer.host.contains(":") ? "[\(peer.host)]" : peer.host)
        print("\nAsk the node who you are (start it with `waakvlamd --config DIR` first):")
        print("  curl --cacert \(path("ca.pem")) --cert \(path("\(example.id).crt")) --key \(path("\(example.id).key")) https://\(host):\(peer.port)/v1/whoami")
    }
}
