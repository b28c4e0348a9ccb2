const hoard = [];
for (;;) { hoard.push(Buffer.alloc(1 << 20, 1)); hoard.push(new Array(1 << 16).fill(hoard.length)); }
