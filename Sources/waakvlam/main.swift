import Foundation

// `waakvlam`: the command line for administrators and partners. Each command group lives in
// its own file; this file only dispatches.

let usage = """
usage: waakvlam <command> [options]

commands:
  config check [DIR]                      validate a configuration folder (default: Config)
  config diff OLD NEW [--json]            what a configuration change opens or closes (exit 3: special-category warning)
  config history|show|rollback --state DIR  applied configuration versions; roll back to one
  policy explain --config DIR --from ORG --type TYPE [--to ORG ...] --payload FILE [--json]
                                          show what the policy engine decides, sending nothing
  pki init --config DIR --out DIR         create a development CA and certificates for every organisation
  send --type T --payload FILE | --csv FILE  submit a signal, or Vroeg Eropaf alerts from a rent ledger (send --help)
  journal verify|query|subject|export     read a node's journal offline
  help                                    this text
"""

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else {
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(2)
}
let rest = Array(arguments.dropFirst())
let status: Int32
switch command {
case "config": status = runConfigCommand(rest)
case "policy": status = runPolicyCommand(rest)
case "pki": status = runPKICommand(rest)
case "journal": status = runJournalCommand(rest)
case "send": status = runSendCommand(rest)
case "help", "--help", "-h":
    print(usage)
    status = 0
default:
    FileHandle.standardError.write(Data("waakvlam: unknown command '\(command)'\n\n\(usage)\n".utf8))
    status = 2
}
exit(status)
