// native-cluster/register is loaded for its effect only:
//   node --import native-cluster/register app.mjs
//   node --require native-cluster/register app.js
export {};
