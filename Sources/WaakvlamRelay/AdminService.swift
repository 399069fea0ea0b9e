import Foundation
import WaakvlamCore
import WaakvlamSystem
import WaakvlamTransport

/// The admin listener (`listen.admin`, loopback by default), with mutual TLS like the peer
/// port:
/// - `GET /healthz`: 200 when the node is running and its journal accepts writes, else 503.
///   Any certificate the node trusts may ask.
/// - `GET /metrics`: Prometheus text format. Administrators only.
/// - `GET /admin/config`: the version in force. Administrators only.
/// - `POST /admin/config/apply`: reload the configuration folder (validated first, swapped
///   atomically, archived, journaled). Administrators only.
/// An administrator is an organisation with `administrator: true` in organisations.json.
enum AdminService {
    /// One event loop is plenty for health checks, metrics scrapes and configuration changes.
    static func makeServer(node: Node, settings: HTTPServer.Configuration) throws -> HTTPServer {
        var settings = settings
        settings.eventLoops = 1
        return try HTTPServer(configuration: settings, tls: try Node.serverContext(node.configuration.node.tls)) { [weak node] request, peer in
            guard let node else { return .error(status: 503, code: "stopping", message: "The node is stopping.") }
            return respond(to: request, from: peer, node: node)
        }
    }

    static func respond(to request: HTTPRequest, from peer: HTTPServer.PeerConnection, node: Node) -> HTTPResponse {
        if request.path == "/healthz" {
            guard request.method == "GET" || request.method == "HEAD" else { return methodNotAllowed(request) }
            let ready = node.isReady
            return .json(status: ready ? 200 : 503, object: [
                "status": ready ? "ready" : "not_ready",
                "state": node.state.rawValue,
                "journalWritable": node.journal.isWritable,
                "configVersion": node.configurationVersion,
            ])
        }
        let administrator: Organisation
        switch Identity.organisation(for: peer.certificate, in: node.configuration) {
        case .failure(let refusal):
            return refusal.response
        case .success(let organisation):
            guard organisation.administrator else {
                return .error(status: 403, code: "not_an_administrator",
                              message: "Organisation '\(organisation.id)' is not an administrator of this node (organisations.json: administrator).")
            }
            administrator = organisation
        }
        switch (request.method, request.path) {
        case ("GET", "/metrics"):
            var response = HTTPResponse(status: 200, body: Array(node.metrics.render().utf8))
            response.headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            return response
        case ("GET", "/admin/config"):
            return .json(status: 200, object: ["version": node.configurationVersion, "folder": node.configFolder])
        case ("POST", "/admin/config/apply"):
            switch node.applyConfiguration(appliedBy: "admin:\(administrator.id)") {
            case .applied(let version, let summary):
                return .json(status: 200, object: ["version": version, "summary": summary])
            case .refused(let issues):
                return .json(status: 422, object: [
                    "error": ["code": "configuration_invalid",
                              "message": "The configuration was refused as a whole; the running one stays. Fix every issue and apply again."],
                    "issues": issues.map { ["file": $0.file, "path": $0.path, "message": $0.message] },
                ])
            }
        case (_, "/metrics"), (_, "/admin/config"), (_, "/admin/config/apply"):
            return methodNotAllowed(request)
        default:
            return .error(status: 404, code: "not_found", message: "The admin listener serves /healthz, /metrics, /admin/config and /admin/config/apply.")
        }
    }

    private static func methodNotAllowed(_ request: HTTPRequest) -> HTTPResponse {
        .error(status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path).")
    }
}
