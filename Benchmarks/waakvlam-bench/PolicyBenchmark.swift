import Foundation
import WaakvlamCore
import WaakvlamRelay

/// `waakvlam-bench policy [--config DIR] [--seconds N]`: policy decisions per CPU-second on
/// one core for the sample payloads of Config/payloads, and submission bodies parsed.
func runPolicyBenchmark(_ arguments: [String]) -> Int32 {
    var folder = "Config"
    var seconds = 2.0
    var remaining = arguments[...]
    while let flag = remaining.popFirst() {
        switch (flag, remaining.popFirst()) {
        case ("--config", let value?): folder = value
        case ("--seconds", let value?): seconds = Double(value) ?? seconds
        default:
            print("usage: waakvlam-bench policy [--config DIR] [--seconds N]")
            return 2
        }
    }
    guard let configuration = ConfigLoading.load(directory: folder).configuration,
          let intermaris = configuration.organisation(id: "intermaris"),
          let arrears = FileManager.default.contents(atPath: folder + "/payloads/huurachterstand.json"),
          let concern = FileManager.default.contents(atPath: folder + "/payloads/zorgsignaal.json"),
          case .success(let arrearsPayload) = Payload.parse(arrears),
          case .success(let concernPayload) = Payload.parse(concern) else {
        print("needs the Hoorn configuration with its sample payloads (Config/payloads); run from the repository root")
        return 1
    }
    let at = Date()
    let cases: [(String, SignalSubmission)] = [
        ("arrears alert, routed by address + politie (allow + deny)",
         SignalSubmission(id: "bench-1", type: "betalingsachterstand", recipients: [.gemeenteOfAddress, .organisation("politie-nhn")], payload: arrearsPayload)),
        ("zorgsignaal to 1hoorn, politie-nhn, gemeente-hoorn",
         SignalSubmission(id: "bench-2", type: "zorgsignaal", recipients: [.organisation("1hoorn"), .organisation("politie-nhn"), .organisation("gemeente-hoorn")], payload: concernPayload)),
    ]
    for (name, submission) in cases {
        let rate = measure(seconds) { _ = PolicyEngine.decide(submission, sender: intermaris, configuration: configuration, at: at) }
        print("policy decide    " + name.padding(toLength: 58, withPad: " ", startingAt: 0) + String(format: "%10.0f signals per CPU-second", rate))
    }
    var body = "{\"id\":\"bench-1\",\"type\":\"betalingsachterstand\",\"routeByAddress\":true,\"payload\":"
    body += String(decoding: Payload.canonicalJSON(arrearsPayload), as: UTF8.self) + "}"
    let bytes = Data(body.utf8)
    let parseRate = measure(seconds) { _ = SignalSubmission.parse(bytes) }
    print("submission parse " + "\(bytes.count)-byte arrears alert".padding(toLength: 58, withPad: " ", startingAt: 0) + String(format: "%10.0f bodies per CPU-second", parseRate))
    return 0
}

/// Runs `work` repeatedly for about `seconds` of this thread's CPU time and returns the calls
/// per CPU-second: the cost on one core, unaffected by other processes sharing the machine.
private func measure(_ seconds: Double, _ work: () -> Void) -> Double {
    func cpuSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
    let start = cpuSeconds()
    var calls = 0
    while cpuSeconds() - start < seconds {
        for _ in 0..<100 { work() }
        calls += 100
    }
    return Double(calls) / (cpuSeconds() - start)
}
