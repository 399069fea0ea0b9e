import Foundation

func runPKICommand(_ arguments: [String]) -> Int32 {
    FileHandle.standardError.write(Data("waakvlam: not built yet\n".utf8))
    return 2
}

