/** The package.json version: what this server reports unless OMFLOW_SERVER_VERSION says otherwise. */
export { packageVersion } from '../common/package-version.js';
