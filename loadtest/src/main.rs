fn main() {
    println!("shardmq-loadtest {}", env!("CARGO_PKG_VERSION"));
}
