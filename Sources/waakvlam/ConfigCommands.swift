import Foundation
import WaakvlamCore
import WaakvlamRelay

// `waakvlam config check` and `waakvlam policy explain`.

private func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `waakvlam config check [DIR]`: every issue as `FILE: PATH: severity: message`; exit 0
/// without errors, 1 with errors, 2 on a usage mistake.
func runConfigCommand(_ arguments: [String]) -> Int32 {
    switch arguments.first {
    case "diff": return runConfigDiffCommand(Array(arguments.dropFirst()))
    case "history": return runConfigHistoryCommand(Array(arguments.dropFirst()))
    case "show": return runConfigShowCommand(Array(arguments.dropFirst()))
    case "rollback": return runConfigRollbackCommand(Array(arguments.dropFirst()))
    default: break
    }
    guard arguments.first == "check", arguments.count <= 2 else {
        printError("usage: waakvlam config check [DIR]   (DIR defaults to Config)")
        return 2
    }
    let folder = arguments.count == 2 ? arguments[1] : "Config"
    let result = ConfigLoading.load(directory: folder)
    for issue in result.issues { print(issue.description) }
    let errors = result.errors.count, warnings = result.warnings.count
    if errors == 0 {
        print("\(folder): valid" + (warnings > 0 ? " (\(warnings) warning\(warnings == 1 ? "" : "s"))" : ""))
        return 0
    }
    print("\(folder): \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s"); fix the errors and run `waakvlam config check \(folder)` again")
    return 1
}

func runPolicyCommand(_ arguments: [String]) -> Int32 {
    printError("waakvlam: policy explain is not built yet")
    return 2
}
