hoard = []
loop { hoard << ("x" * (1 << 20)) }
