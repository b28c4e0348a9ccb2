fn main() { eprintln!("failing on purpose"); std::process::exit(3); }
