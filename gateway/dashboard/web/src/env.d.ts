// Lets tsc (an optional, Node-only check) accept the stylesheet import esbuild bundles.
declare module "*.css";
