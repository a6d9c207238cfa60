fn main() {
    print!("{}", promo_adapters::policy::markdown_table());
}
