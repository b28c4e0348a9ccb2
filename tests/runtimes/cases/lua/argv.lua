print(table.concat(arg, "|"))
