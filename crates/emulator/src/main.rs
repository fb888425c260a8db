fn main() {
    eprintln!("x-emulator: not built yet (issue 6)");
    std::process::exit(2);
}
