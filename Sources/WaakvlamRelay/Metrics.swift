import Foundation

/// Counters, gauges and histograms rendered in the Prometheus text exposition format.
/// Thread-safe; cheap enough for the hot path (one lock, dictionary update). Counters counted
/// per signal are best incremented through a `CounterFamily`, found once.
public final class Metrics: @unchecked Sendable {
    /// The series of one counter with one label, found once (`Metrics.counters(_:by:)`):
    /// an increment hashes only the label's value under the family's own lock, without a
    /// dictionary of labels or the counter's name. /metrics shows them as any other series.
    public final class CounterFamily: @unchecked Sendable {
        public let name: String
        public let label: String
        private let lock = NSLock()
        private var values: [String: Double] = [:]

        fileprivate init(name: String, label: String) {
            self.name = name
            self.label = label
        }

        /// The series whose label is `value`, as `Metrics.increment(name, [label: value], by: amount)`.
        public func increment(_ value: String, by amount: Double = 1) {
            lock.lock(); defer { lock.unlock() }
            values[value, default: 0] += amount
        }

        fileprivate func value(_ value: String) -> Double {
            lock.lock(); defer { lock.unlock() }
            return values[value] ?? 0
        }

        fileprivate func series() -> [String: Double] {
            lock.lock(); defer { lock.unlock() }
            return values
        }
    }

    private struct Key: Hashable {
        let name: String
        let labels: [String: String]

        /// The hot-path series have one label: hashed as a pair, instead of the dictionary's
        /// hash (a separately seeded hasher per element). Equal keys hash alike either way.
        func hash(into hasher: inout Hasher) {
            hasher.combine(name)
            hasher.combine(labels.count)
            if labels.count == 1, let (label, value) = labels.first {
                hasher.combine(label)
                hasher.combine(value)
            } else {
                hasher.combine(labels)
            }
        }

        /// Likewise compared as a pair, without looking each key up in the other dictionary.
        static func == (a: Key, b: Key) -> Bool {
            guard a.name == b.name, a.labels.count == b.labels.count else { return false }
            if a.labels.count == 1, let (label, value) = a.labels.first, let (otherLabel, otherValue) = b.labels.first {
                return label == otherLabel && value == otherValue
            }
            return a.labels == b.labels
        }
    }

    private struct Histogram {
        let buckets: [Double]
        var counts: [UInt64]
        var sum: Double = 0
        var count: UInt64 = 0

        init(buckets: [Double]) {
            self.buckets = buckets
            counts = Array(repeating: 0, count: buckets.count)
        }

        mutating func add(_ value: Double) {
            for (index, bound) in buckets.enumerated() where value <= bound { counts[index] += 1 }
            sum += value
            count += 1
        }
    }

    private let lock = NSLock()
    private var counters: [Key: Double] = [:]
    private var gauges: [Key: Double] = [:]
    private var histograms: [Key: Histogram] = [:]
    private var help: [String: (type: String, text: String)] = [:]
    private var families: [CounterFamily] = []
    /// Gauges computed at scrape time (e.g. backlog per recipient from the delivery index).
    private var collectors: [() -> [(name: String, labels: [String: String], value: Double)]] = []

    public init() {}

    public func describe(_ name: String, type: String, _ text: String) {
        lock.lock(); defer { lock.unlock() }
        help[name] = (type, text)
    }

    /// The family of counter `name` by `label`, made at the first call (later calls give the
    /// same family). Its series add up with those incremented by name.
    public func counters(_ name: String, by label: String) -> CounterFamily {
        lock.lock(); defer { lock.unlock() }
        if let family = families.first(where: { $0.name == name && $0.label == label }) { return family }
        let family = CounterFamily(name: name, label: label)
        families.append(family)
        return family
    }

    public func increment(_ name: String, _ labels: [String: String] = [:], by amount: Double = 1) {
        lock.lock(); defer { lock.unlock() }
        counters[Key(name: name, labels: labels), default: 0] += amount
    }

    public func set(_ name: String, _ labels: [String: String] = [:], to value: Double) {
        lock.lock(); defer { lock.unlock() }
        gauges[Key(name: name, labels: labels)] = value
    }

    /// Records one observation; `buckets` are upper bounds, used the first time a series is seen.
    public func observe(_ name: String, _ value: Double, buckets: [Double], _ labels: [String: String] = [:]) {
        lock.lock(); defer { lock.unlock() }
        // Updated in place: a copy taken out of the dictionary would copy its arrays (and a
        // `default:` value capturing `buckets` would cost a closure context per call).
        let key = Key(name: name, labels: labels)
        if let index = histograms.index(forKey: key) {
            histograms.values[index].add(value)
        } else {
            var histogram = Histogram(buckets: buckets)
            histogram.add(value)
            histograms[key] = histogram
        }
    }

    public func addCollector(_ collector: @escaping () -> [(name: String, labels: [String: String], value: Double)]) {
        lock.lock(); defer { lock.unlock() }
        collectors.append(collector)
    }

    /// The value of a counter (tests and the benchmark read these).
    public func counter(_ name: String, _ labels: [String: String] = [:]) -> Double {
        lock.lock()
        let counted = counters[Key(name: name, labels: labels)] ?? 0
        let family = labels.count == 1 ? families.first { $0.name == name && labels[$0.label] != nil } : nil
        lock.unlock()
        guard let family, let value = labels[family.label] else { return counted }
        return counted + family.value(value)
    }

    public func render() -> String {
        lock.lock()
        var counters = self.counters
        let gauges = self.gauges, histograms = self.histograms
        let help = self.help, collectors = self.collectors, families = self.families
        lock.unlock()
        for family in families {
            for (value, amount) in family.series() { counters[Key(name: family.name, labels: [family.label: value]), default: 0] += amount }
        }
        var computed = gauges
        for collector in collectors {
            for sample in collector() { computed[Key(name: sample.name, labels: sample.labels)] = sample.value }
        }
        var out = ""
        var described = Set<String>()
        func header(_ name: String, _ fallbackType: String) {
            guard described.insert(name).inserted else { return }
            if let entry = help[name] {
                out += "# HELP \(name) \(entry.text)\n# TYPE \(name) \(entry.type)\n"
            } else {
                out += "# TYPE \(name) \(fallbackType)\n"
            }
        }
        for key in counters.keys.sorted(by: Metrics.order) {
            header(key.name, "counter")
            out += "\(key.name)\(Metrics.format(key.labels)) \(Metrics.number(counters[key]!))\n"
        }
        for key in computed.keys.sorted(by: Metrics.order) {
            header(key.name, "gauge")
            out += "\(key.name)\(Metrics.format(key.labels)) \(Metrics.number(computed[key]!))\n"
        }
        for key in histograms.keys.sorted(by: Metrics.order) {
            let histogram = histograms[key]!
            header(key.name, "histogram")
            for (index, bound) in histogram.buckets.enumerated() {
                var labels = key.labels
                labels["le"] = Metrics.number(bound)
                out += "\(key.name)_bucket\(Metrics.format(labels)) \(histogram.counts[index])\n"
            }
            var labels = key.labels
            labels["le"] = "+Inf"
            out += "\(key.name)_bucket\(Metrics.format(labels)) \(histogram.count)\n"
            out += "\(key.name)_sum\(Metrics.format(key.labels)) \(Metrics.number(histogram.sum))\n"
            out += "\(key.name)_count\(Metrics.format(key.labels)) \(histogram.count)\n"
        }
        // Described metrics without samples yet still appear, so dashboards find them.
        for name in help.keys.sorted() where !described.contains(name) {
            header(name, help[name]!.type)
        }
        return out
    }

    private static func order(_ a: Key, _ b: Key) -> Bool {
        if a.name != b.name { return a.name < b.name }
        return format(a.labels) < format(b.labels)
    }

    private static func format(_ labels: [String: String]) -> String {
        guard !labels.isEmpty else { return "" }
        let parts = labels.keys.sorted().map { key -> String in
            let value = labels[key]!
                .replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\(key)=\"\(value)\""
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    private static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
