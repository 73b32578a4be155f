fn main() {
    println!("shardmq {}", env!("CARGO_PKG_VERSION"));
}
