/**
 * The failure converter when payload encryption is on (connectors/payloadCodec): a failure's
 * message and stack trace move into its `encodedAttributes`, a payload the codec encrypts, and the
 * message line Temporal stores reads "Encoded failure". Upstream error bodies and tool transport
 * errors can quote the prompt, and a run's own failure repeats the client's error message.
 *
 * The SDK takes a custom failure converter only as a module path with this named export: the
 * client and the workers `require` it, and the workflow sandbox gets it bundled in (so it lives
 * here, under the workflow code's import rules).
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
