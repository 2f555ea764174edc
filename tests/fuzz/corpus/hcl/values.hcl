a = [1, "x", {b = true}]
blk "l" { c = -1.5e3 }
