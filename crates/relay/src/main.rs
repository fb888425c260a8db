fn main() {
    eprintln!("activity-relay: not built yet");
    std::process::exit(2);
}
