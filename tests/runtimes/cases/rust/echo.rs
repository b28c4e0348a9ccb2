use std::io::{self, Read, Write};
fn main() {
    let mut data = Vec::new();
    io::stdin().read_to_end(&mut data).unwrap();
    io::stdout().write_all(&data).unwrap();
}
