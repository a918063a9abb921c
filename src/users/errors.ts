/**
 * Expected failures of user administration. The code is a key of the CLI catalogue
 * (src/cli/errors.ts), which gives it an exit status and a next step; this folder does
 * not depend on the command line.
 */
export type UserErrorCode =
  | 'INVALID_AOR'
  | 'DOMAIN_NOT_SERVED'
  | 'INVALID_PASSWORD'
  | 'USER_EXISTS'
  | 'USER_NOT_FOUND'
  | 'HOME_NOT_FOUND';

export class UserAdminError extends Error {
  constructor(
    readonly code: UserErrorCode,
    message: string,
    readonly suggestion?: string,
  ) {
    super(message);
    this.name = 'UserAdminError';
  }
}
