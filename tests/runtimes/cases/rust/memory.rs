fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for byte in block.iter_mut() { *byte = 1; }
        hoard.push(block);
        println!("{}", hoard.len() + hoard[hoard.len() / 2][7] as usize);
    }
}
