console.error("failing on purpose");
process.exit(3);
