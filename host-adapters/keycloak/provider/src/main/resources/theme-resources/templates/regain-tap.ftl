<#-- Self-contained markup so that the form renders under both the keycloak.v2 and the older login themes. -->
<#import "template.ftl" as layout>
<@layout.registrationLayout displayMessage=!messagesPerField.existsError('tap'); section>
    <#if section = "header">
        ${msg("regainTapTitle")}
    <#elseif section = "form">
        <form id="kc-tap-login-form" class="${properties.kcFormClass!}" onsubmit="login.disabled = true; return true;"
              action="${url.loginAction}" method="post">
            <div class="${properties.kcFormGroupClass!}">
                <div class="${properties.kcFormGroupLabelClass!} ${properties.kcLabelWrapperClass!}">
                    <label for="tap" class="${properties.kcFormLabelClass!} ${properties.kcLabelClass!}">
                        <span class="${properties.kcFormLabelTextClass!}">${msg("regainTapLabel")}</span>
                    </label>
                </div>
                <span class="${properties.kcInputClass!} <#if messagesPerField.existsError('tap')>${properties.kcError!}</#if>">
                    <input id="tap" name="tap" type="text" autocomplete="one-time-code" autocapitalize="characters"
                           spellcheck="false" autofocus dir="ltr"
                           aria-invalid="<#if messagesPerField.existsError('tap')>true</#if>"
                           <#if messagesPerField.existsError('tap')>aria-describedby="input-error-tap"</#if> />
                </span>
                <#if messagesPerField.existsError('tap')>
                    <div class="${properties.kcFormHelperTextClass!}" aria-live="polite">
                        <div class="${properties.kcInputHelperTextClass!}">
                            <div class="${properties.kcInputHelperTextItemClass!} ${properties.kcError!}" id="input-error-tap">
                                <span class="${properties.kcInputErrorMessageClass!}">
                                    ${kcSanitize(messagesPerField.get('tap'))?no_esc}
                                </span>
                            </div>
                        </div>
                    </div>
                </#if>
            </div>

            <div class="${properties.kcFormGroupClass!}">
                <div id="kc-form-buttons" class="${properties.kcFormActionGroupClass!} ${properties.kcFormButtonsClass!}">
                    <input class="${properties.kcButtonClass!} ${properties.kcButtonPrimaryClass!} ${properties.kcButtonBlockClass!} ${properties.kcButtonLargeClass!}"
                           name="login" id="kc-login" type="submit" value="${msg("regainTapSignIn")}" />
                </div>
            </div>
        </form>
    </#if>
</@layout.registrationLayout>
