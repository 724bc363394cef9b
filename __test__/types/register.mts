// The preload imported for its effect from an ES module: the extensionless
// `native-cluster/register` has types under every resolution (the package has
// no `exports` map; package.json's typesVersions points the subpath at
// register.d.ts). Checked with noUncheckedSideEffectImports.
import 'native-cluster/register';
